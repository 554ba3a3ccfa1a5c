# firstpaint — `make demo`, `make test`, `make bench`. Each installs what is missing first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
BUILD := build
MODEL := $(BUILD)/model/model.json
APT := DEBIAN_FRONTEND=noninteractive apt-get

.PHONY: demo test bench deps system-deps model browser lint clean

deps: $(PY_STAMP) $(NODE_STAMP) system-deps

$(PY_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Debian packages the tests drive for real: Chromium (Playwright's executable_path) and Redis.
system-deps:
	@command -v chromium >/dev/null && command -v redis-server >/dev/null || \
	  { $(APT) update -qq && $(APT) install -y -qq chromium redis-server >/dev/null; }

# Train on simulated traffic and export model.json + model.onnx, with a report.
model: $(PY_STAMP)
	$(PY) -m model_export train --simulate 100000 --out $(BUILD)/model

# The script-tag snippet, the Pyodide worker and the project's wheel, into browser/dist/.
browser: $(PY_STAMP) $(NODE_STAMP)
	node browser/build.mjs

demo: deps model browser
	$(PY) -m origin.demo --model $(MODEL)

test: deps
	$(PY) -m pytest -q -p no:cacheprovider tests
	node --test tests/js/

bench: deps
	@mkdir -p $(BUILD)/bench
	$(PY) -m tests.bench

lint: $(PY_STAMP)
	$(PY) -m ruff check model_export origin tests
	$(PY) -m ruff format --check model_export origin tests
	$(PY) -m mypy model_export origin

clean:
	rm -rf $(BUILD) .pytest_cache
