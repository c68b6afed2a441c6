# Two commands: `make run` (the whole stack, foreground) and `make test` (the suite).
PYTHON ?= python3
# `make user` prints the new key as its last line, also when run from another make.
MAKEFLAGS += --no-print-directory
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench install clean user compose-tool browser

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

# tests/config/test_compose.py validates docker-compose.yml with `docker-compose config`
# (Debian's package; no Docker daemon needed). Installed here when missing, if this is
# root with apt-get; elsewhere that test is skipped.
compose-tool:
	@command -v docker-compose >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing docker-compose (apt-get) to validate docker-compose.yml"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -qq docker-compose >/dev/null 2>&1 \
	      || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq docker-compose >/dev/null 2>&1; } \
	      || echo "warning: apt-get could not install docker-compose; tests/config/test_compose.py will say so"; \
	  else \
	    echo "note: docker-compose is not installed (needs root and apt-get); its compose checks are skipped"; \
	  fi; }

# tests/browser drives Debian's Chromium headless through Playwright (no browser download:
# Playwright launches /usr/bin/chromium). Installed here when missing, if this is root with
# apt-get; elsewhere the browser tests are skipped with the reason.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium (apt-get) for the chat page's browser tests"; \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1 \
	      || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq chromium chromium-driver >/dev/null 2>&1; } \
	      || echo "warning: apt-get could not install chromium; tests/browser will be skipped"; \
	  else \
	    echo "note: chromium is not installed (needs root and apt-get); tests/browser are skipped"; \
	  fi; }

install: $(STAMP) compose-tool browser

run: $(STAMP)
	$(PY) -m devstack

test: $(STAMP) compose-tool browser
	$(PY) -m pytest

# Figures, not tests: the whole stack on this machine, one table, bench/results.json.
# BENCH_ARGS="--quick" for a smoke run, "--scenario 1" for one scenario.
bench: $(STAMP)
	$(PY) -m bench $(BENCH_ARGS)

clean:
	rm -rf var .pytest_cache

# A new API key for NAME (the user is created if needed): in DATABASE_URL, or else in the
# database of the `make run` running in this folder (it lists its services in var/services.json).
user: $(STAMP)
	@test -n "$(NAME)" || { echo "usage: make user NAME=alice"; exit 2; }
	@$(PY) -m api.keys issue "$(NAME)"
