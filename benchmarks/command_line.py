"""The ``dima bench <name> ...`` command line as typed, for the reports and docs the benchmarks write."""

from __future__ import annotations

import shlex
import sys


def bench_command(name: str) -> str:
    """``dima bench <name> <its arguments>`` from ``sys.argv``; a note when the benchmark was called as a library."""
    argv = sys.argv[1:]
    if "bench" in argv and name in argv:
        argv = argv[argv.index(name) + 1 :]
        return f"dima bench {name} " + " ".join(shlex.quote(a) for a in argv)
    return f"dima bench {name} (called as a library)"
