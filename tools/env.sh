# shellcheck shell=bash
# Source me:  source tools/env.sh
# Activates the project venv (pip-only ROS 2 kilted) and overlays the colcon install of the `dima` package, so that
# `python -c "import rclpy, dima.msg"`, the `dima` CLI and `colcon build` all work in this shell.
#
# What it sets and why:
#   VIRTUAL_ENV, PATH              the venv (python3.11, colcon, dima console script)
#   AMENT_PREFIX_PATH              the venv is the "underlay": rclpy/rmw find type supports via its ament index
#   CMAKE_PREFIX_PATH              colcon/CMake find ament_cmake, rosidl_* there
#   LD_LIBRARY_PATH                $VENV/lib + site-packages/ros_*.libs (the ROS C libraries the wheels ship)
#   _ROS_WHEELS_BOOTSTRAP_COMPLETE=1  the wheels install a .pth hook that re-execs EVERY python process once to set
#                                  LD_LIBRARY_PATH; we set it ourselves (deterministic order), so skip that re-exec
#   RMW_IMPLEMENTATION             rmw_fastrtps_cpp (the only RMW installed) unless already set
#   PYTHONPATH                     install/ overlay (dima.msg / dima.srv), then the repo root so dima_core/dima_ros
#                                  come from the working tree even before a re-install picks up new files
# Safe to source twice, from any directory, and from shells with `set -u`.

_dima_env_main() {
  local root venv sp d
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  venv="${VENV:-$root/.venv}"
  case "$venv" in /*) ;; *) venv="$root/$venv" ;; esac
  if [[ ! -x "$venv/bin/python" ]]; then
    echo "tools/env.sh: no virtual environment at $venv (run 'make setup')" >&2
    return 1
  fi
  export DIMA_ROOT="$root"
  export VIRTUAL_ENV="$venv"
  unset PYTHONHOME
  case ":$PATH:" in *":$venv/bin:"*) ;; *) export PATH="$venv/bin:$PATH" ;; esac

  _dima_prepend() {  # _dima_prepend VAR DIR: put DIR first in the colon list VAR, once
    local var="$1" dir="$2" cur
    cur="${!var:-}"
    cur=":$cur:"; cur="${cur//:$dir:/:}"; cur="${cur#:}"; cur="${cur%:}"
    export "$var=$dir${cur:+:$cur}"
  }
  # The venv is the underlay: add it once, behind whatever overlays are already there (re-sourcing keeps the order).
  case ":${AMENT_PREFIX_PATH:-}:" in *":$venv:"*) ;; *) _dima_prepend AMENT_PREFIX_PATH "$venv" ;; esac
  case ":${CMAKE_PREFIX_PATH:-}:" in *":$venv:"*) ;; *) _dima_prepend CMAKE_PREFIX_PATH "$venv" ;; esac
  sp="$venv/lib/python3.11/site-packages"
  for d in "$sp"/ros_*.libs; do [[ -d "$d" ]] && _dima_prepend LD_LIBRARY_PATH "$d"; done
  _dima_prepend LD_LIBRARY_PATH "$venv/lib"
  export _ROS_WHEELS_BOOTSTRAP_COMPLETE=1
  export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"

  # colcon overlay (generated scripts are not `set -u` clean: relax it while sourcing)
  if [[ -f "$root/install/local_setup.bash" ]]; then
    local had_u=0
    [[ $- == *u* ]] && had_u=1 && set +u
    # shellcheck disable=SC1091
    COLCON_CURRENT_PREFIX="$root/install" source "$root/install/local_setup.bash"
    (( had_u )) && set -u
  else
    echo "tools/env.sh: $root/install not built yet (run 'make setup' or 'make build'); dima.msg will not import" >&2
  fi
  _dima_prepend PYTHONPATH "$root"
  unset -f _dima_prepend
}
_dima_env_main "$@"
_dima_env_rc=$?
unset -f _dima_env_main
# shellcheck disable=SC2317
return $_dima_env_rc 2>/dev/null || exit $_dima_env_rc
