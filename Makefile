# One-command entry points. Each runs `python3.x dev.py <task>`, which builds .venv first when needed;
# without make, run the same tasks as `python dev.py <task>` (see README).
# PYTHON: the newest of python3.13, python3.12, python3.11 that runs here, else python3 (dev.py then
# says if its version is unsupported). Override: make test PYTHON=python3.12
PYTHON ?= $(or $(firstword $(foreach v,3.13 3.12 3.11,$(shell python$(v) -c "" >/dev/null 2>&1 && echo python$(v)))),python3)
DEV := $(PYTHON) dev.py

.PHONY: venv demo test test-fast lint style notebook bench mutate clean

venv:
	$(DEV) venv

demo:
	$(DEV) demo  # runs in its own folder, demo/: never mixed with your data/

test:
	$(DEV) test

test-fast:
	$(DEV) test-fast

lint:
	$(DEV) lint

style:
	$(DEV) style

notebook:
	$(DEV) notebook

bench:
	$(DEV) bench

mutate:  # mutation testing: mutmut, then the hand-written mutations (tests/README.md)
	$(DEV) mutate

clean:  # caches only: data/ is never touched
	rm -rf .pytest_cache .ruff_cache mutants
