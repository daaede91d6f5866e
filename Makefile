# evedit: `make demo` and `make test` do all the set-up themselves on a fresh machine.
#   make demo                     create .venv, install, edit a bundled ShapeWorld clip
#   make test                     same install, then the test suite (offline)
#   make demo TORCH_SPEC='torch==2.13.0' TORCH_ARGS='--index-url https://download.pytorch.org/whl/cu124'
PYTHON     ?= python3
VENV       ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_ARGS ?=
OUT        ?= outputs/demo
BIN        := $(VENV)/bin
STAMP      := $(VENV)/.evedit-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test install bench clean train-shapeworld

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check "$(TORCH_SPEC)" $(TORCH_ARGS)
	echo "$(TORCH_SPEC)" > $(VENV)/torch-constraint.txt
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt -c $(VENV)/torch-constraint.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/evedit demo --out $(OUT)

test: $(STAMP)
	$(BIN)/python -m pytest tests

train-shapeworld: $(STAMP)
	scripts/train_shapeworld.sh

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) outputs
