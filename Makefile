# relaywatch: `make demo` and `make test` work on a fresh machine with Python 3.11 and make.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# sample_logs/ ends on 2026-11-27: judge it as the nightly run of the next day would
SAMPLE_AS_OF := 2026-11-28

.PHONY: demo test test-spark bench sample clean wheel-check lock accuracy

# The pinned versions from requirements.lock, then relaywatch itself without resolving again
$(STAMP): pyproject.toml requirements.lock
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "make: $(PYTHON) not found; run 'make PYTHON=python3 ...'" >&2; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

demo: $(STAMP)
	@test -d sample_logs/inbox || $(BIN)/relaywatch generate --out sample_logs --preset sample
	$(BIN)/relaywatch nightly --inbox sample_logs/inbox --lake demo/lake --reports demo/reports \
		--as-of $(SAMPLE_AS_OF) --no-email || test $$? -eq 3
	@echo "relaywatch: lake in $(CURDIR)/demo/lake (columns: docs/data-dictionary.md)"
	@echo "relaywatch: report at $(CURDIR)/demo/reports/$(SAMPLE_AS_OF)/report.html (and report.txt, verdicts.json, tenants/)"

test: $(STAMP)
	$(BIN)/ruff check pipeline tests
	$(BIN)/mypy pipeline
	$(BIN)/python -m pytest -q -n auto

# --engine spark on a real standalone cluster (a master and a worker on 127.0.0.1, started and
# stopped by tests/spark/conftest.py): the [spark] extra from requirements-spark.lock, Java 17.
SPARK_STAMP := $(VENV)/.spark-installed
$(SPARK_STAMP): $(STAMP) requirements-spark.lock
	$(BIN)/python -m pip install --quiet -r requirements-spark.lock
	@touch $(SPARK_STAMP)

test-spark: $(SPARK_STAMP)
	@command -v java >/dev/null 2>&1 || { echo "make test-spark: needs Java 17 (apt-get install openjdk-17-jre-headless)" >&2; exit 2; }
	$(BIN)/python -m pytest -q -m spark tests/spark

# The verdict report card (issue 17): three seeds of 300 drawn tenants, a few minutes.
# ACCURACY_ARGS="--seed 7" picks one seed; "--work DIR" keeps the inboxes and lakes.
accuracy: $(STAMP)
	$(BIN)/python tests/accuracy/report_card.py $(ACCURACY_ARGS) 2>/dev/null

# A wheel as users install it (not editable) in a fresh venv, run on the sample
wheel-check: $(STAMP)
	rm -rf build/wheel-check && mkdir -p build/wheel-check
	$(BIN)/python -m pip wheel --quiet --no-deps -w build/wheel-check .
	$(PYTHON) -m venv build/wheel-check/venv
	build/wheel-check/venv/bin/python -m pip install --quiet -r requirements.lock
	build/wheel-check/venv/bin/python -m pip install --quiet --no-deps build/wheel-check/relaywatch-*.whl
	cd build/wheel-check && venv/bin/relaywatch nightly --inbox $(CURDIR)/sample_logs/inbox \
		--lake lake --reports reports --as-of $(SAMPLE_AS_OF) --no-email || test $$? -eq 3
	test -s build/wheel-check/reports/$(SAMPLE_AS_OF)/report.html
	@echo "wheel-check: the installed wheel ran the nightly job"

# requirements.lock from the venv as it is (after changing pyproject.toml's dependencies)
lock:
	$(BIN)/python -m pip install --quiet -e '.[test]'
	{ echo "# Every package make demo / make test install, pinned (regenerate: make lock)."; \
	  $(BIN)/python -m pip freeze --exclude-editable | grep -v '^#'; } > requirements.lock

# Not part of `make test`: minutes at full size. BENCH_SCALE=0.1 for a quick look;
# BENCH_ARGS="--work DIR --only nightly" keeps the data and runs one part.
bench: $(SPARK_STAMP)
	$(BIN)/python tests/bench/bench.py $(BENCH_ARGS)

sample: $(STAMP)
	rm -rf sample_logs/inbox
	$(BIN)/relaywatch generate --out sample_logs --preset sample

clean:
	rm -rf $(VENV) demo .pytest_cache build
