# Two set-up commands for a fresh machine: `make demo` and `make test`. Each creates the
# virtual environment if missing, installs the package with its extras, then runs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

# ROS 2 traffic stays on this machine (no multicast on the external interface) and on a domain
# of its own per run (0-101), so parallel runs never cross-talk. Override on the command line.
export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
ROS_DOMAIN_ID ?= $(shell $(PYTHON) -c 'import random; print(random.SystemRandom().randint(1, 101))')
export ROS_DOMAIN_ID

.PHONY: demo test test-fast lint bench install pretrained clean

$(STAMP): setup.py setup.cfg pyproject.toml package.xml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[ros,dev]"
	touch $(STAMP)

install: $(STAMP)

# The main demo: the sim robot in the real_lab look, driven over ROS 2 by the sim-trained policy
# behind the shipped VR-Goggles, then the same rooms without goggles for comparison.
DEMO_ARGS ?= episodes:=3 seed:=0 real_time_factor:=2.0
demo: $(STAMP)
	@echo "== goggles launch navigation (VR-Goggles on), real_lab look"
	$(BIN)/goggles launch navigation $(DEMO_ARGS)
	@echo "== goggles launch navigation goggles:=false (no goggles), the same rooms"
	$(BIN)/goggles launch navigation $(DEMO_ARGS) goggles:=false

# The default suite (what to run while working: `make test-fast`), then the checks marked slow
# (training loops, launch graphs, compilers); CI runs both.
test: test-fast
	$(BIN)/python -m pytest -q -m slow

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/goggles bench env --json

# Remake the shipped checkpoints (about 4 hours on 2 CPU cores); see scripts/make_pretrained.sh.
pretrained: $(STAMP)
	bash scripts/make_pretrained.sh

clean:
	rm -rf $(VENV) demo_out build *.egg-info
