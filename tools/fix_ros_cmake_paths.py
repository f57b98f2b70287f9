#!/usr/bin/env python3
"""Make the CMake exports of the PyPI ``ros-kilted-*`` wheels usable inside a virtual environment.

The wheels are built in a manylinux container whose Python lives in ``/opt/python/cp311-cp311``; a few of their CMake
config files (rosidl_generator_py, python_cmake_module, ...) bake in

    /opt/python/cp311-cp311/include/python3.11                                  (Python headers)
    /opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include    (NumPy headers, numpy>=2 layout)

Neither exists here, so ``colcon build`` of a package that generates interfaces fails.  This script, run with the
venv's Python, rewrites every such path below ``$VENV/share`` and ``$VENV/lib/cmake`` to point at stable symlinks in
``$VENV/share/dima_cmake_compat/`` and (re)points those symlinks at this interpreter's real include directories.
No root needed, nothing outside the venv is touched.

It also patches one line of rosidl_generator_py's CMake (``rosidl_generator_py_generate_interfaces.cmake``):
``target_include_directories(<pkg>__rosidl_generator_py PUBLIC ${Python3_INCLUDE_DIRS} ${Python3_NumPy_INCLUDE_DIRS})``
exports NumPy's include directory, which for a venv inside the source tree (our ``.venv``) lies inside the source
directory, and CMake refuses to export such a path ("INTERFACE_INCLUDE_DIRECTORIES property contains path ... which is
prefixed in the source directory"). The patch wraps it in ``$<BUILD_INTERFACE:...>``: used to compile the generated
Python extension, not exported (no package links against another package's ``__rosidl_generator_py`` library).

Idempotent: a second run finds no baked path left and only refreshes the two symlinks (so reinstalling numpy 1 <-> 2,
which moves its headers between numpy/core/include and numpy/_core/include, stays correct).

Usage: ``$VENV/bin/python tools/fix_ros_cmake_paths.py [--venv DIR] [--check] [-v]``
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import sysconfig
from pathlib import Path

BAKED_PREFIX = "/opt/python/cp311-cp311"
COMPAT_DIR = Path("share") / "dima_cmake_compat"

# Longest patterns first. Each maps a baked path to (name of a compat symlink, or None for a direct venv path).
# Anything else under the baked prefix is reported (and makes --check fail) so a new wheel release cannot break us
# silently.
_NUMPY_RE = re.compile(re.escape(BAKED_PREFIX) + r"/lib/python3\.\d+/site-packages/numpy/(?:_core|core)/include")
_PYINC_RE = re.compile(re.escape(BAKED_PREFIX) + r"/include/python3\.\d+")
_SITE_RE = re.compile(re.escape(BAKED_PREFIX) + r"/lib/python3\.\d+/site-packages")
_PYEXE_RE = re.compile(re.escape(BAKED_PREFIX) + r"/bin/python3(?:\.\d+)?")


def python_include_dir() -> Path:
    inc = Path(sysconfig.get_paths()["include"])
    if not (inc / "Python.h").is_file():
        raise SystemExit(
            f"fix_ros_cmake_paths: Python headers not found at {inc} (Python.h missing). Install the Python "
            "development headers (e.g. apt-get install python3.11-dev, or a pyenv/python.org build, which ship them)."
        )
    return inc


def numpy_include_dir() -> Path:
    try:
        import numpy  # noqa: PLC0415
    except ImportError as exc:  # pragma: no cover - setup installs numpy before calling us
        raise SystemExit(f"fix_ros_cmake_paths: numpy is not importable in {sys.executable}: {exc}") from exc
    return Path(numpy.get_include())


def refresh_symlink(link: Path, target: Path) -> bool:
    """Point ``link`` at ``target``; return True when it changed."""
    if link.is_symlink() and os.readlink(link) == str(target):
        return False
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target, target_is_directory=True)
    return True


GENPY_CMAKE = Path("share") / "rosidl_generator_py" / "cmake" / "rosidl_generator_py_generate_interfaces.cmake"
GENPY_ORIGINAL = "PUBLIC ${Python3_INCLUDE_DIRS} ${Python3_NumPy_INCLUDE_DIRS})"
GENPY_PATCHED = (
    'PUBLIC ${Python3_INCLUDE_DIRS} "$<BUILD_INTERFACE:${Python3_NumPy_INCLUDE_DIRS}>")'
    "  # patched by dima tools/fix_ros_cmake_paths.py (venv inside the source tree)"
)


def patch_generator_py(venv: Path, check: bool, verbose: bool) -> bool:
    """Wrap the exported NumPy include dir in $<BUILD_INTERFACE:...>; True when the file is (now) patched."""
    path = venv / GENPY_CMAKE
    if not path.is_file():
        print(f"fix_ros_cmake_paths: {path} not found (is ros-kilted-rosidl-generator-py installed?)", file=sys.stderr)
        return False
    text = path.read_text(encoding="utf-8")
    if GENPY_PATCHED in text:
        return True
    if GENPY_ORIGINAL not in text:
        print(f"fix_ros_cmake_paths: unexpected content in {path}; NumPy include line not patched", file=sys.stderr)
        return False
    if check:
        return False
    path.write_text(text.replace(GENPY_ORIGINAL, GENPY_PATCHED), encoding="utf-8")
    if verbose:
        print(f"  patched {path.relative_to(venv)}")
    return True


def candidate_files(venv: Path):
    for root in (venv / "share", venv / "lib" / "cmake"):
        if not root.is_dir():
            continue
        for path in root.rglob("*"):
            if (
                path.is_file()
                and not path.is_symlink()
                and (path.suffix == ".cmake" or path.name.endswith(".cmake.in"))
            ):
                yield path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--venv", type=Path, default=Path(sys.prefix), help="virtual environment (default: sys.prefix)")
    ap.add_argument("--check", action="store_true", help="only report; exit 1 if any baked path is left")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    venv = args.venv.resolve()

    compat = venv / COMPAT_DIR
    py_link, np_link = compat / "python_include", compat / "numpy_include"
    site = Path(sysconfig.get_paths(vars={"base": str(venv), "platbase": str(venv)})["purelib"])
    replacements = [
        (_NUMPY_RE, str(np_link)),
        (_PYINC_RE, str(py_link)),
        (_SITE_RE, str(site)),
        (_PYEXE_RE, str(venv / "bin" / "python3")),
    ]

    if not args.check:
        compat.mkdir(parents=True, exist_ok=True)
        for link, target in ((py_link, python_include_dir()), (np_link, numpy_include_dir())):
            if refresh_symlink(link, target) and args.verbose:
                print(f"  {link} -> {target}")

    genpy_ok = patch_generator_py(venv, args.check, args.verbose)
    changed, leftovers = 0, []
    for path in candidate_files(venv):
        try:
            text = path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, OSError):
            continue
        if BAKED_PREFIX not in text:
            continue
        if args.check:
            leftovers.append(path)
            continue
        new = text
        for pattern, repl in replacements:
            new = pattern.sub(repl, new)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed += 1
            if args.verbose:
                print(f"  rewrote {path.relative_to(venv)}")
        if BAKED_PREFIX in new:
            leftovers.append(path)

    if leftovers or not genpy_ok:
        for path in leftovers:
            for line in path.read_text(encoding="utf-8").splitlines():
                if BAKED_PREFIX in line:
                    print(f"fix_ros_cmake_paths: baked path left in {path}: {line.strip()}", file=sys.stderr)
        return 1
    if not args.check:
        print(f"fix_ros_cmake_paths: {changed} file(s) rewritten; compat links in {compat}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
