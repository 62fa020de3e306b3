# mnas: `make run` (main job) and `make test` (test suite) install what is missing first.
PY      := .venv/bin/python
PIP     := .venv/bin/pip
DATA    := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
RUN_ARGS ?= device=pixel budget=15ms

PG_INITDB := $(firstword $(wildcard /usr/lib/postgresql/*/bin/initdb))

.PHONY: setup data postgres run test clean

setup: .venv/.installed data

# Every pip call passes the constraints file, so torch stays the pinned CPU build.
.venv/.installed: requirements.txt constraints.txt pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PIP) install -q -c constraints.txt -r requirements.txt
	$(PIP) install -q -c constraints.txt --no-deps --no-build-isolation -e .   # import mnas from anywhere
	touch $@

# Fashion-MNIST comes from Debian's package; installed automatically when running as root.
data:
	@if [ ! -f $(DATA) ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	  else echo "Fashion-MNIST missing: run 'sudo apt-get install dataset-fashion-mnist' (tests do not need it)"; fi; \
	fi

# The several-workers test starts a throwaway PostgreSQL server; Debian's package, installed when run as root.
postgres:
	@if [ -z "$(PG_INITDB)" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq postgresql; \
	  else echo "PostgreSQL missing: 'sudo apt-get install postgresql' (its test is skipped without it)"; fi; \
	fi

run: setup
	$(PY) -m mnas.search $(RUN_ARGS)

test: setup postgres
	$(PY) -m pytest -q --durations=10

clean:
	rm -rf .venv .pytest_cache
