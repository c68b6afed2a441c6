# Two commands: `make run` (the whole stack, foreground) and `make test` (the suite).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test install clean user

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(PY) -m devstack

test: $(STAMP)
	$(PY) -m pytest

clean:
	rm -rf var .pytest_cache

# A new API key for NAME (the user is created if needed); DATABASE_URL must point at the database.
user: $(STAMP)
	@test -n "$(NAME)" || { echo "usage: make user NAME=alice"; exit 2; }
	@$(PY) -m api.keys "$(NAME)"
