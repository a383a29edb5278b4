# The two commands of the README: `make demo` and `make test`. Both create .venv when missing.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Tests and the demo never touch a real torch cache and never need the network: TORCH_HOME is a
# private folder holding stand-in weights (see docs/design.md, "Weights and offline use").
STANDIN_HOME := $(CURDIR)/.cache/torch-standin
RUN_ENV := PATH="$(CURDIR)/$(VENV)/bin:$$PATH" TORCH_HOME="$(STANDIN_HOME)" MPLBACKEND=Agg \
	PYTHONHASHSEED=0 OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2}
# Keep the machine's local CPU-only torch wheel out: it breaks torchvision's import.
PIP_ENV := PIP_FIND_LINKS= PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1
PYTEST_ARGS ?=

.PHONY: demo test lab formgrader build build-check lint standin-weights fetch-weights dist clean help

help:
	@echo "make demo   - build the labs, grade the sample submissions, print the grade table"
	@echo "make test   - run the whole test suite (offline)"
	@echo "make lab    - open JupyterLab on release/ (the student copies)"
	@echo "make formgrader - open JupyterLab on the course root with nbgrader's formgrader (instructors)"
	@echo "make build  - regenerate release/ and solutions/ from source/"
	@echo "make fetch-weights - download the real ImageNet weights into your torch cache"
	@echo "make dist   - build the wheel and sdist of course_lib + autograder into dist/ (Colab)"

$(STAMP): pyproject.toml constraints.txt
	@command -v python3 >/dev/null || { echo "python3 (3.10+) is required"; exit 1; }
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP_ENV) $(PY) -m pip install -q --upgrade pip
	$(PIP_ENV) $(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	@command -v dot >/dev/null || echo "warning: Graphviz 'dot' not found; install it (apt-get install graphviz / conda install -c conda-forge graphviz) for Task 4"
	touch $(STAMP)

standin-weights: $(STAMP)
	$(RUN_ENV) $(PY) -m course_lib standin-weights --torch-home "$(STANDIN_HOME)" resnet34 vgg16 vit_b_16

build: $(STAMP)
	$(RUN_ENV) $(VENV)/bin/course build

build-check: $(STAMP)
	$(RUN_ENV) $(VENV)/bin/course build --check

demo: $(STAMP) standin-weights
	$(RUN_ENV) $(VENV)/bin/course demo

test: $(STAMP) standin-weights
	$(RUN_ENV) $(VENV)/bin/ruff check course_lib autograder tests benchmarks
	$(RUN_ENV) $(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(RUN_ENV) $(VENV)/bin/ruff check course_lib autograder tests benchmarks

# The two JupyterLab sessions read their settings from jupyter/student or jupyter/instructor (put
# first on JUPYTER_CONFIG_PATH; nothing in your home folder): both start as root too and put the
# environment's bin/ on the terminal's PATH; the student's shows release/ only, without nbgrader's
# formgrader; the instructor's is the course root, formgrader included (menu Nbgrader).
LAB_ENV = PATH="$(CURDIR)/$(VENV)/bin:$$PATH" \
	JUPYTER_CONFIG_PATH="$(CURDIR)/jupyter/$(1)$${JUPYTER_CONFIG_PATH:+:$$JUPYTER_CONFIG_PATH}"
JUPYTER_ARGS ?=  # more options for jupyter lab, e.g. make lab JUPYTER_ARGS="--no-browser --port=8890"

lab: $(STAMP)
	$(call LAB_ENV,student) $(VENV)/bin/jupyter lab --ServerApp.root_dir=release $(JUPYTER_ARGS)

formgrader: $(STAMP)
	$(call LAB_ENV,instructor) $(VENV)/bin/jupyter lab --ServerApp.root_dir=. $(JUPYTER_ARGS)

# Real weights, into your own torch cache (network needed once; then copy the cache to an
# offline grading machine, see README).
fetch-weights: $(STAMP)
	$(PY) -m course_lib fetch-weights resnet34 vgg16 vit_b_16

# A wheel and an sdist of this package (course_lib for students, autograder with the `course`
# command) for environments without this repository, e.g. Colab (README, "On Colab"); offline:
# built with the environment's setuptools.
dist: $(STAMP)
	rm -rf dist
	$(PIP_ENV) $(PY) -m build --no-isolation --outdir dist .

clean:
	rm -rf autograded feedback submitted gradebook.db grades.csv .cache build demo_course dist
