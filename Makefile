# Two commands on a fresh machine (Debian/Ubuntu, Python 3.11):
#   make dashboard   set everything up, then open the dashboard on the built-in data
#   make test        set everything up, then run the tests (what CI runs)
# Set-up: apt packages, then a virtual environment .venv made by $(PY) with every pip package
# in it. Debian's and Ubuntu's own Python refuse `pip install` outside one (PEP 668,
# "externally-managed-environment"). Any Python 3.11+ works: make setup PY=/usr/bin/python3
PY ?= python3
VENV := .venv
VPY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
STAMP := $(VENV)/.setup-done

.PHONY: setup dashboard test test-fast demo lint bench

# python3-venv: Debian's Python makes no venv without it; a venv without pip (made before it
# was there, or half made) is made again
$(STAMP): requirements.txt requirements-dev.txt
	$(SUDO) apt-get update -qq
	$(SUDO) apt-get install -y -qq python3-venv dataset-fashion-mnist chromium >/dev/null
	$(VPY) -m pip --version >/dev/null 2>&1 || $(PY) -m venv --clear $(VENV)
	$(VPY) -m pip install -q -r requirements-dev.txt
	touch $(STAMP)

setup: $(STAMP)

dashboard: $(STAMP)
	$(VPY) -m dashboard

test: $(STAMP)
	$(VPY) -m pytest -q

test-fast: $(STAMP)
	$(VPY) -m pytest -q -m "not slow"

demo: $(STAMP)
	$(VPY) -m trainer demo

lint: $(STAMP)
	$(VPY) -m ruff check .

# the CPU benchmarks (benchmarks/bench.py): one table, JSON in benchmarks/results/; on an idle
# machine. BENCH_QUICK=1 make bench: the smoke mode (~2 min). benchmarks/gpu_check.sh is the GPU
# machine's one call
bench: $(STAMP)
	$(VPY) benchmarks/bench.py
