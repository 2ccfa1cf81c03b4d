# Two commands on a fresh machine (Debian/Ubuntu, Python 3.11):
#   make dashboard   set everything up, then open the dashboard on the built-in data
#   make test        set everything up, then run the tests (what CI runs)
PY ?= python3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
STAMP := .setup-done

.PHONY: setup dashboard test test-fast demo lint bench

$(STAMP): requirements.txt requirements-dev.txt
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq dataset-fashion-mnist chromium >/dev/null
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $(STAMP)

setup: $(STAMP)

dashboard: $(STAMP)
	$(PY) -m dashboard

test: $(STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

demo: $(STAMP)
	$(PY) -m trainer demo

lint: $(STAMP)
	$(PY) -m ruff check .

bench: $(STAMP)
	for b in benchmarks/*.py; do $(PY) $$b || exit 1; done
