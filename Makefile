# compss-infer: `make demo` and `make test` set everything up themselves (a .venv in this folder).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev

.PHONY: install demo test bench model install-gpu clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/compss-infer demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m benchmarks

model: $(STAMP)
	$(BIN)/python scripts/train_demo_model.py

# The CUDA build of TensorFlow replaces tensorflow-cpu (pip extras cannot remove a dependency).
install-gpu: $(STAMP)
	$(BIN)/python -m pip uninstall --yes tensorflow-cpu
	$(BIN)/python -m pip install --quiet -e '.[gpu]'

clean:
	rm -rf $(VENV) results .pytest_cache build src/*.egg-info
