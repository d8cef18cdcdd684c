# Set-up and checks. `make test` and `make demo` create .venv when it is missing and install the
# pinned dependencies. PyTorch comes from $(TORCH_SPEC): the CPU build on machines without a GPU.
# With a GPU, point TORCH_INDEX at a CUDA wheel index, e.g.
#   make test TORCH_INDEX=https://download.pytorch.org/whl/cu126
PYTHON ?= python3.11
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test test-fast lint demo bench clean

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check \
	  $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX) --extra-index-url https://pypi.org/simple) \
	  "$(TORCH_SPEC)"
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.txt -r requirements-dev.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check webly tests bench
	$(BIN)/ruff format --check webly tests bench
	$(BIN)/mypy webly

# Two pytest-xdist workers (the 2-core machines this runs on); worksteal balances the long
# end-to-end tests; the ten slowest are listed.
test: lint
	$(BIN)/pytest -q -n 2 --dist worksteal --durations=10

test-fast: lint
	$(BIN)/pytest -q -n 2 --dist worksteal --durations=10 -m "not slow"

demo: $(STAMP)
	$(BIN)/webly demo --out demo-out

bench: $(STAMP)
	$(BIN)/python bench/bench_import.py
	$(BIN)/python bench/bench_metrics.py
	$(BIN)/python bench/bench_store.py
	$(BIN)/python bench/bench_baselines.py
	$(BIN)/python bench/bench_synth.py
	$(BIN)/python bench/bench_products.py
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-bench.txt
	$(BIN)/python bench/bench_clean.py
# bench/bench_synth_speed.py writes ~24 GB at full size; run it by hand (see bench/RESULTS.md).

clean:
	rm -rf $(VENV) demo-out .mypy_cache .ruff_cache .pytest_cache
