# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: coverage run test test-fast test-slow lint typecheck bench install clean screenshots docs

install: $(STAMP)

# The package is laid out from four folders, so setuptools installs it editable through an import finder and says so
# on every install ("Editable installation"): a notice with nothing to act on, kept out of the quiet install.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

run: install
	$(BIN)/hajj-ledger demo
	$(BIN)/hajj-ledger serve --demo-keys

PYTEST := $(BIN)/python -m pytest
# A worker per core; `xdist_group` keeps a module's shared fixture on one worker.
WORKERS := -n 2 --dist loadgroup

# The suite in two phases, then its duration: the tests spread over two workers, then, alone, the tests marked
# `serial` (they restart the shared PostgreSQL, or hold a deadline that two cores shared with the rest of the suite
# would miss). The tests marked `slow` (soak and scale) are `make test-slow`'s. `make coverage` runs the same suite
# measured: tracing doubles its time on Python 3.11 (measured), so it is a target of its own.
test: install
	@started=$$(date +%s); status=0; \
	$(PYTEST) $(WORKERS) -m "not serial and not slow" || status=$$?; \
	$(PYTEST) -m "serial and not slow" || status=$$?; \
	took=$$(( $$(date +%s) - started )); \
	echo "make test: the suite took $$((took / 60)) min $$((took % 60)) s"; \
	exit $$status

# `make test` with coverage of the package (pyproject.toml's [tool.coverage]): the figure printed, and the run fails
# below its floor, fail_under.
coverage: install
	@started=$$(date +%s); status=0; rm -f .coverage .coverage.*; \
	$(PYTEST) $(WORKERS) -m "not serial and not slow" --cov --cov-report= || status=$$?; \
	$(PYTEST) -m "serial and not slow" --cov --cov-append --cov-report= || status=$$?; \
	covered=$$($(BIN)/coverage report --format=total) || status=$$?; \
	took=$$(( $$(date +%s) - started )); \
	echo "make coverage: the suite took $$((took / 60)) min $$((took % 60)) s; it covered $$covered% of the package" \
		"(the floor: fail_under in pyproject.toml; every file: .venv/bin/coverage report)"; \
	exit $$status

# The unit tests alone, in seconds, without coverage: what to run between two edits.
test-fast: install
	$(PYTEST) -q -p no:cacheprovider tests/unit

# The soak and scale tests (marked `slow`): long runs of many commands, nodes or machines' steps. CI runs them.
test-slow: install
	$(PYTEST) $(WORKERS) -m "slow and not serial"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(MAKE) --no-print-directory typecheck

# mypy strict on the package as installed (pre-commit's hook runs this too).
typecheck: install
	rm -rf .typecheck && mkdir -p .typecheck/hajj_ledger
	ln -s $(CURDIR)/src/hajj_ledger/* .typecheck/hajj_ledger/
	ln -s $(CURDIR)/projections .typecheck/hajj_ledger/projections
	ln -s $(CURDIR)/api .typecheck/hajj_ledger/api
	ln -s $(CURDIR)/migrations .typecheck/hajj_ledger/migrations
	$(BIN)/mypy

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis .typecheck .coverage .coverage.*

# The documentation site (mkdocs.yml, docs/) into var/site; --strict: a broken link or a page left out fails it.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

# The benchmark suite: writes BENCHMARKS.md and bench/results.json (about forty minutes; its serving tier needs wrk).
bench: install
	$(BIN)/python bench/run.py

# The dashboard's main pages on a fresh demo store, into docs/ (docs/dashboard.md shows them); needs /usr/bin/chromium.
screenshots: install
	$(BIN)/python bench/dashboard.py --screenshots docs
