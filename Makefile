# One-command entry points. `make demo` and `make test` each build the environment first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-fast lint style notebook bench clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	@# albumentations pulls opencv-python-headless into the same cv2 folder: keep only the GUI build.
	$(BIN)/pip uninstall -q -y opencv-python-headless opencv-python
	$(BIN)/pip install -q --no-deps opencv-python==4.14.0.94
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

demo: venv
	$(BIN)/facetracker --root demo demo  # its own folder: never mixed with your data/

test: venv
	$(BIN)/ruff check .
	TF_ENABLE_ONEDNN_OPTS=0 $(BIN)/pytest -q --timeout=900

test-fast: venv
	TF_ENABLE_ONEDNN_OPTS=0 $(BIN)/pytest -q -m "not slow"

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

style: venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

notebook: venv
	$(BIN)/jupyter lab FaceDetection.ipynb

bench: venv
	$(BIN)/python benchmarks/run.py

clean:  # caches only: data/ is never touched
	rm -rf .pytest_cache .ruff_cache
