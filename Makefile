# Two commands: `make run` (the pipeline on MovieLens-100K) and `make test`.
# Both create .venv with Python 3.10 and install the pinned stack on first use.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
# MovieLens-100K: the shared copy beside the checkout when there is one, else downloaded.
SHARED_ML100K := ../shared/data/movielens-100k
DATA ?= $(if $(wildcard $(SHARED_ML100K)/u.data),$(SHARED_ML100K),movielens-100k)
OUTPUT ?= outputs
PYTEST_ARGS ?=
BENCH_OUT ?= results.json
# bench-distill writes BENCH_OUT when it is given, else distill.json (not bench-quality's file).
DISTILL_OUT ?= $(if $(filter command line environment,$(origin BENCH_OUT)),$(BENCH_OUT),distill.json)
SERVING_BENCH_OUT ?= serving_results.json
DISTILL_ARGS ?=
TESTBED ?= data/sparse-testbed
TESTBED_SHAPE ?= default
SERVING_PORT ?= 8500
SERVING_REST_PORT ?= 8501
SERVING_BENCH_ARGS ?=
SCALE_USERS ?= 100000
SCALE_ITEMS ?= 50000
SCALE_INTERACTIONS ?= 10000000
SCALE_OUT ?= scale_results.json
SPANS ?= 10
SPAN_DAYS ?= 7

# python3.10 from PATH, pyenv or the system, whichever answers as 3.10.
PYTHON310 ?= $(shell for p in python3.10 $$HOME/.pyenv/versions/3.10*/bin/python3.10 \
  /usr/local/bin/python3.10 /usr/bin/python3.10; do \
  $$p -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null && { echo $$p; break; }; done)

.PHONY: install run test schema bench-quality bench-distill testbed bench-scale serve bench-serving \
  simulate-days clean

install: $(VENV)/.installed

$(VENV)/.installed: setup.py requirements/lock.txt
	@test -n "$(PYTHON310)" || { echo 'error: python3.10 not found (set PYTHON310=...)'; exit 1; }
	$(PYTHON310) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade 'pip==24.0' 'setuptools==69.5.1' wheel
	$(BIN)/pip install --quiet -c requirements/lock.txt -e '.[test]'
	touch $@

# A quiet log: TensorFlow's C++ start-up lines and the import-time warnings of Google's client
# libraries (pipeline/progress.py lists what else is hidden and why); VERBOSE=1 shows everything.
QUIET_ENV := TF_CPP_MIN_LOG_LEVEL=3 \
  PYTHONWARNINGS='ignore:You are using a non-supported Python version:FutureWarning'
VERBOSE ?=

run: install
	$(if $(VERBOSE),,$(QUIET_ENV)) $(BIN)/python -m pipeline.local_runner --data '$(DATA)' \
	  --output '$(OUTPUT)' $(if $(VERBOSE),--verbose)

# The test files run in parallel, one worker per CPU, each file on one worker (its module
# fixtures, such as a whole pipeline run, are built once); TEST_WORKERS=0 runs them in-process.
TEST_WORKERS ?= auto
test: install
	$(BIN)/python -m pytest tests -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# The schema inferred from the latest run's statistics, beside the curated pipeline/schema/
# schema.pbtxt, to diff against it and update it by hand.
schema: install
	$(BIN)/python -m pipeline.infer_schema --output '$(OUTPUT)'

bench-quality: install
	$(BIN)/python -m benchmarks.quality --data '$(DATA)' --output '$(OUTPUT)' --bench-out '$(BENCH_OUT)'

# The size-quality frontier: teacher, and students of every size with and without the teacher,
# over 3 seeds (benchmarks/distill.py); the frontier plot is written beside BENCH_OUT.
bench-distill: install
	$(BIN)/python -m benchmarks.distill --data '$(DATA)' --output '$(OUTPUT)/distill' \
	  --bench-out '$(DISTILL_OUT)' $(DISTILL_ARGS)

# The sparse, large-catalogue test bed (ingest/sparse_testbed.py) as CSV files in TESTBED;
# TESTBED_SHAPE=wide-short for 30,000 items and short histories in no particular order.
testbed: install
	$(BIN)/python -m ingest.sparse_testbed --output '$(TESTBED)' --shape '$(TESTBED_SHAPE)'

# The local TF-Serving-compatible server on the pushed models (serving/README.md), with
# oneDNN off: its kernels corrupt the heap when the teacher runs concurrent batches of
# different sizes (serving/README.md, Benchmark).
serve: install
	@test -d '$(OUTPUT)/serving/student' || \
	  { echo 'error: nothing pushed to $(OUTPUT)/serving (run make run)'; exit 1; }
	@echo 'Try the models in a browser: http://127.0.0.1:$(SERVING_REST_PORT)/ (once they load)'
	TF_ENABLE_ONEDNN_OPTS=0 $(BIN)/python -m serving.server \
	  --model_config_file serving/models.config \
	  --base_path_rewrite '/models=$(OUTPUT)/serving' --model_config_file_poll_wait_seconds 5 \
	  --port $(SERVING_PORT) --rest_api_port $(SERVING_REST_PORT) \
	  --monitoring_config_file serving/monitoring.config

bench-serving: install
	TF_ENABLE_ONEDNN_OPTS=0 $(BIN)/python -m benchmarks.serving --serving-dir '$(OUTPUT)/serving' \
	  --bench-out '$(SERVING_BENCH_OUT)' $(SERVING_BENCH_ARGS)

clean:
	rm -rf $(OUTPUT) .pytest_cache

# DATA cut into SPANS spans of SPAN_DAYS days, the pipeline run span after span (warm-started)
# and a cold retrain beside each (benchmarks/simulate_days.py); rows in BENCH_OUT.
simulate-days: install
	$(if $(VERBOSE),,$(QUIET_ENV)) $(BIN)/python -m benchmarks.simulate_days --data '$(DATA)' \
	  --output '$(OUTPUT)/simulate_days' --bench-out '$(BENCH_OUT)' --spans $(SPANS) \
	  --span-days $(SPAN_DAYS)

bench-scale: install
	$(BIN)/python -m benchmarks.scale --users $(SCALE_USERS) --items $(SCALE_ITEMS) \
	  --interactions $(SCALE_INTERACTIONS) --output '$(OUTPUT)/scale' --bench-out '$(SCALE_OUT)'
