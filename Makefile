# Developer entry points. Everything runs through tox in a private .venv, so the
# only prerequisites are python3 (with venv) and, for the tests, redis-server.
#
#   make demo    run the demo project (tox -e demo)
#   make test    run the test suite on the reference stack
#   make lint    ruff + mypy
#   make matrix  every supported Python / Django / redis-py combination
#   make clean   remove virtualenvs, caches and build output

VENV := .venv
TOX  := $(VENV)/bin/tox
TEST_ENV := py311-django52-redis8

# tox looks interpreters up as python3.10 ... python3.13 on PATH. Under pyenv those
# shims only resolve for the versions named in PYENV_VERSION, so expose all of them
# (3.11 first: it is what `python3` means for the .venv below). Left alone when the
# caller already set PYENV_VERSION or when pyenv is not installed; versions pyenv
# does not have are dropped, since one unknown name makes every shim fail.
PYENV_VERSIONS := 3.11.7 3.10.13 3.12.1 3.13.0
ifeq ($(origin PYENV_VERSION),undefined)
PYENV := $(shell command -v pyenv 2>/dev/null)
ifneq ($(PYENV),)
empty :=
space := $(empty) $(empty)
pyenv_installed := $(shell $(PYENV) versions --bare --skip-aliases 2>/dev/null)
pyenv_selected := $(strip $(foreach v,$(PYENV_VERSIONS),$(filter $(v),$(pyenv_installed))))
ifneq ($(pyenv_selected),)
export PYENV_VERSION := $(subst $(space),:,$(pyenv_selected))
endif
endif
endif

.PHONY: test demo lint matrix clean bench

$(TOX):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q tox

test: $(TOX)
	$(TOX) -e $(TEST_ENV)

demo: $(TOX)
	$(TOX) -e demo

lint: $(TOX)
	$(TOX) -e lint

matrix: $(TOX)
	$(TOX)

clean:
	rm -rf $(VENV) .tox build dist *.egg-info .coverage .coverage.* htmlcov \
		.mypy_cache .ruff_cache .hypothesis .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# The benchmarks of bench/ (peers vs the limit, faults), written to bench/RESULTS.md;
# about 12 minutes. Builds bench/.venv (the project, gunicorn, the peers, profilers) and
# apt-gets wrk and hyperfine when missing. See bench/run.py for BENCH_* knobs.
bench:
	python3 bench/bootstrap.py
