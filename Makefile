# The README's two commands. Both install what is missing first (system packages with
# apt-get, the virtualenv, the Python packages) and skip what is already there.
VENV    := .venv
PY      := $(VENV)/bin/python
INV     := $(VENV)/bin/inv
STAMP   := $(VENV)/.installed
# The suite mostly waits (PostgreSQL starts, restores, archiving, sshd), so two workers halve it
# on two cores; --dist loadfile keeps a file's tests on one worker (its module-scoped source is
# built once). Ports and state directories are already safe across concurrent sessions.
PYTEST_WORKERS ?= 2

.PHONY: test drill bootstrap system clean-venv

## make test: install what is missing, check runbooks against code, run the whole suite
test: bootstrap
	$(INV) runbooks.check
	$(VENV)/bin/pytest -q -n $(PYTEST_WORKERS) --dist loadfile

## make drill: a real DR drill against the local PostgreSQL (environment "local")
drill: bootstrap
	$(INV) dr.drill

bootstrap: system $(STAMP)

system:
	@./scripts/bootstrap-system.sh

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel

$(STAMP): setup.cfg pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

clean-venv:
	rm -rf $(VENV)
