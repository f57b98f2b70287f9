# DiMA for ROS 2 — developer entry points. Fresh machine (Debian + python3.11, no ROS, no GPU):
#     make setup   # .venv + pinned deps (torch CPU first) + pip-only ROS 2 kilted + colcon build of the interfaces
#     make test    # setup (if needed) + pytest with the venv, ROS env and colcon overlay (tools/env.sh)
#     make demo    # synthetic world -> train (stage 1 + 2) -> ONNX -> bag -> ROS nodes -> metrics + an answer
# Everything nontrivial lives in tools/*.sh so it can be run and debugged without make.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3.11
VENV ?= $(CURDIR)/.venv
PYTEST_ARGS ?=
export PYTHON VENV

.PHONY: help setup build test demo planner clean distclean

help:
	@echo "make setup      create .venv, install deps, fix ROS CMake paths, colcon build (idempotent, stamped)"
	@echo "make build      re-run colcon build of the dima package only (interfaces + python install)"
	@echo "make test       setup + pytest (PYTEST_ARGS='-k ros -x' to pass options)"
	@echo "make demo       setup + the whole chain: world, training, export, bag replay into the nodes, a question"
	@echo "make planner    setup + rebuild the shipped planner weights and score them (docs/planner_model_card.md; ~1.5-2 h)"
	@echo "make clean      remove build/ install/ log/ outputs/demo/ caches (keeps .venv)"
	@echo "make distclean  clean + remove .venv"

setup:
	@bash tools/setup_env.sh

build:
	@bash tools/setup_env.sh --build

test: setup
	@bash tools/run_tests.sh $(PYTEST_ARGS)

demo: setup
	@bash tools/demo.sh

planner: setup
	@bash tools/planner.sh

clean:
	rm -rf build install log outputs/demo .pytest_cache
	rm -f $(VENV)/.dima-stamps/colcon
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
