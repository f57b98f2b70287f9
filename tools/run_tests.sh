#!/usr/bin/env bash
# `make test`: run pytest inside the project environment (venv + ROS env + colcon overlay; see tools/env.sh).
# Extra arguments go to pytest:  tools/run_tests.sh -k ros_interfaces -x
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck disable=SC1091
source tools/env.sh
# Headless everywhere (matplotlib in the data viewers); no stdin in CI.
export MPLBACKEND="${MPLBACKEND:-Agg}"
# Static checks first (seconds): a name left undefined by a refactor, a likely bug (bugbear), an unsorted import, a
# ROS import in dima_core (ruff.toml) or a file that is not `ruff format`ted fails here, not 10 minutes into pytest.
python -m ruff check --quiet .
python -m ruff format --check --output-format concise . || {
    echo "run_tests.sh: the files listed above are not formatted: run 'python -m ruff format .'" >&2
    exit 1
}
exec python -m pytest "$@" </dev/null
