# The front door. `make demo` runs the pipeline on the embedded defaults; `make test` runs every test.
# Downloads and builds are cached outside the clone in $(STOCKLAKE_CACHE) (default ~/.cache/stocklake);
# runtime data, logs and generated config live in .lake/ (git-ignored).

SHELL := /bin/bash
.DEFAULT_GOAL := help

export STOCKLAKE_CACHE ?= $(HOME)/.cache/stocklake
RUNTIME := $(CURDIR)/.lake
UV_VERSION := 0.13.9
UV := $(STOCKLAKE_CACHE)/tools/uv-$(UV_VERSION)/bin/uv
PYTHON := $(CURDIR)/.venv/bin/python
# Airflow has its own environment (airflow/pyproject.toml): its Spark provider brings another `pyspark` module.
AIRFLOW_VENV := $(CURDIR)/.venv-airflow
AIRFLOW_PORT ?= 8080

export UV_CACHE_DIR ?= $(STOCKLAKE_CACHE)/uv
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/.venv
export SPARK_CONF_DIR := $(RUNTIME)/spark-conf
export SPARK_LOCAL_IP ?= 127.0.0.1
export PYSPARK_PYTHON := $(PYTHON)
export PATH := $(CURDIR)/.venv/bin:$(PATH)

# Local stack credentials: generated once per clone, never committed (see .gitignore), loaded here for every target.
-include $(RUNTIME)/credentials.env
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY

PYTEST_ARGS ?=
# make test runs the suite on this many pytest-xdist workers (tests sharing a dataset share a worker: load groups,
# tests/conftest.py). Each report lands in $(RUNTIME)/test-reports: junit.xml and durations.txt.
TEST_WORKERS ?= 2
TEST_REPORTS := $(RUNTIME)/test-reports

.PHONY: help setup airflow-setup services-up services-down services-status services-reset demo gold airflow test \
        test-unit lock clean dashboard bench chaos spark-cluster spark-cluster-down monitoring-up monitoring-down \
        monitoring-status

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' Makefile | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

$(UV):
	python3 -m venv $(dir $(@D))
	$(dir $(@D))bin/pip install --quiet uv==$(UV_VERSION)

# --compile-bytecode: the .pyc files are written once, here. Without them every Python process (each dbt run, job,
# producer, Airflow task, test worker) compiles what it imports from source again where PYTHONDONTWRITEBYTECODE is
# set (as in CI and the image): importing dbt, pyspark and pandas took 6.0 CPU-s instead of 2.6, Airflow 4.5 instead
# of 1.8. Compiling costs 26 s once per fresh pair of environments.
.venv/.synced: $(UV) uv.lock pyproject.toml
	$(UV) sync --frozen --python python3.11 --compile-bytecode
	@touch $@

$(AIRFLOW_VENV)/.synced: export UV_PROJECT_ENVIRONMENT := $(AIRFLOW_VENV)
$(AIRFLOW_VENV)/.synced: $(UV) airflow/uv.lock airflow/pyproject.toml
	$(UV) sync --frozen --project airflow --python python3.11 --compile-bytecode
	@touch $@

airflow-setup: $(AIRFLOW_VENV)/.synced ## install the Airflow environment (.venv-airflow, from airflow/uv.lock; cached)

$(SPARK_CONF_DIR)/spark-defaults.conf: jars/spark.lock jars/fetch.py conf/spark/spark-defaults.conf
	python3 jars/fetch.py spark --spark-defaults $@ --classpath-file $(RUNTIME)/spark-jars.txt

$(SPARK_CONF_DIR)/log4j2.properties: conf/spark/log4j2.properties
	@mkdir -p $(@D) && cp $< $@

$(RUNTIME)/kafka-classpath.txt: jars/kafka.lock jars/fetch.py
	python3 jars/fetch.py kafka --classpath-file $@

$(RUNTIME)/credentials.env:
	@mkdir -p $(@D)
	@umask 077; printf 'AWS_ACCESS_KEY_ID=lake-%s\nAWS_SECRET_ACCESS_KEY=%s\n' \
	  "$$(openssl rand -hex 4)" "$$(openssl rand -hex 20)" > $@
	@echo "generated local MinIO credentials in $@"

$(RUNTIME)/env.sh: Makefile
	@mkdir -p $(@D)
	@printf '%s\n' '# source .lake/env.sh: the environment the Makefile gives every command, for working by hand.' \
	  'export STOCKLAKE_CACHE="$(STOCKLAKE_CACHE)" SPARK_CONF_DIR="$(SPARK_CONF_DIR)" SPARK_LOCAL_IP="$(SPARK_LOCAL_IP)"' \
	  'export PYSPARK_PYTHON="$(PYTHON)" PATH="$(CURDIR)/.venv/bin:$$PATH"' \
	  'set -a; . "$(RUNTIME)/credentials.env"; set +a' > $@

setup: .venv/.synced $(AIRFLOW_VENV)/.synced $(SPARK_CONF_DIR)/spark-defaults.conf \
       $(SPARK_CONF_DIR)/log4j2.properties $(RUNTIME)/kafka-classpath.txt $(RUNTIME)/credentials.env $(RUNTIME)/env.sh ## install everything (cached)
	@java -version 2>&1 | awk -F'"' '/version/ { split($$2, v, "."); if (v[1] < 17) { print "setup: Java 17+ is required, found " $$2; exit 1 } }'
	@scripts/build_minio.sh >/dev/null
	@echo "setup: ready (environment for manual use: source .lake/env.sh)"

services-up: setup ## start Kafka (KRaft) and MinIO, create the topics and the bucket
	$(PYTHON) scripts/services.py up

services-down: ## stop Kafka and MinIO
	@if [ -x $(PYTHON) ]; then $(PYTHON) scripts/services.py down; fi

services-status: ## show whether Kafka and MinIO are running and healthy
	$(PYTHON) scripts/services.py status

services-reset: ## stop the services and delete their data (topics, tables, checkpoints)
	$(PYTHON) scripts/services.py reset

# Prometheus and its Pushgateway from Debian's packages (apt-get install prometheus prometheus-pushgateway), on
# conf/prometheus: the scrape config, the alert rules (runbooks: README, Operations). Ports: monitoring.* in
# conf/pipeline.yaml; the stream and the producer are scraped at their metrics_port (0 = off: no target).
monitoring-up: setup ## start Prometheus (http://127.0.0.1:19090, alert rules of conf/prometheus) and its Pushgateway
	$(PYTHON) scripts/services.py monitoring-up

monitoring-down: ## stop Prometheus and the Pushgateway (services-down stops them too)
	@if [ -x $(PYTHON) ]; then $(PYTHON) scripts/services.py monitoring-down; fi

monitoring-status: ## show whether Prometheus and the Pushgateway are running and healthy
	$(PYTHON) scripts/services.py monitoring-status

# A Spark standalone master and one worker from the installed Spark, on 127.0.0.1 (scripts/spark_cluster.py; ports and
# sizes: services.spark_* in conf/pipeline.yaml). Submit with --master spark://127.0.0.1:17077 (docs/spark_cluster.md).
spark-cluster: setup ## start a Spark standalone master + worker (spark://127.0.0.1:17077, UI :18080)
	$(PYTHON) scripts/spark_cluster.py up

spark-cluster-down: ## stop the Spark standalone master and worker
	@if [ -x $(PYTHON) ]; then $(PYTHON) scripts/spark_cluster.py down; fi

demo: services-up ## run the whole flow for about a minute and print what landed where
	$(PYTHON) scripts/demo.py

# Gold: dbt on the local target (the DuckDB file warehouse.duckdb_path names, unless DBT_DUCKDB_PATH is set; Silver
# read from MinIO; start the services first), given its vars from the settings (python -m conf.dbt_vars).
# dbt runs offline: no anonymous usage stats, no version check; target/ and logs/ stay in dbt_project/.
gold: export DBT_PROFILES_DIR := $(CURDIR)/dbt_project
gold: export DBT_SEND_ANONYMOUS_USAGE_STATS := false
gold: export DBT_DUCKDB_PATH ?= $(shell $(PYTHON) -m conf.settings warehouse.duckdb_path)
gold: services-up ## build Gold from what changed in Silver (change index, then dbt build on DuckDB in .lake/warehouse)
	@mkdir -p "$$(dirname "$$DBT_DUCKDB_PATH")"
	$(PYTHON) -m spark_jobs.silver_changes
	vars="$$($(PYTHON) -m conf.dbt_vars)" && \
	  $(CURDIR)/.venv/bin/dbt build --project-dir $(CURDIR)/dbt_project --target local --vars "$$vars"

# The live dashboard (dashboard/app.py) over Gold: the DuckDB file `make demo` / `make gold` build (or Snowflake when
# warehouse.target is snowflake). Gold is a file, so the services need not be up. Port: dashboard.port. Ctrl-C stops it.
dashboard: export DBT_DUCKDB_PATH ?= $(shell $(PYTHON) -m conf.settings warehouse.duckdb_path)
dashboard: export STREAMLIT_BROWSER_GATHER_USAGE_STATS := false
dashboard: setup ## serve the live dashboard on http://127.0.0.1:$STOCKLAKE_DASHBOARD_PORT (default 8501)
	@port="$$($(PYTHON) -m conf.settings dashboard.port)" && echo "dashboard: http://127.0.0.1:$$port" && \
	exec $(PYTHON) -m streamlit run dashboard/app.py --server.address 127.0.0.1 --server.port "$$port" \
	  --server.headless true --client.toolbarMode viewer

# Benchmarks on the real local stack (bench/run.py): producer, stream catch-up and live rates, latency, the Kafka
# ceiling, the per-message baseline, compaction, Gold build time and peak memory. Writes .lake/bench/results.{json,md,png}
# and prints the table. BENCH_ARGS passes options, e.g. BENCH_ARGS="--events 500000".
BENCH_ARGS ?=
bench: services-up ## measure throughput, latency, batch-time breakdown, compaction, Gold build and memory (~20 min; .lake/bench/)
	$(PYTHON) -m bench.run $(BENCH_ARGS)

# Airflow 3 standalone (scheduler, DAG processor, triggerer, API server + UI) with this checkout's DAGs, on the local
# services; every Airflow variable, connection and the tasks' job environment come from scripts/airflow_env.py.
# The admin password is generated once into a file (mode 600) and never printed. Ctrl-C stops Airflow.
airflow: services-up airflow-setup ## run Airflow 3 locally: UI on http://127.0.0.1:$AIRFLOW_PORT (default 8080)
	@echo "airflow: UI http://127.0.0.1:$(AIRFLOW_PORT), user admin, password in" \
	  "$$($(AIRFLOW_VENV)/bin/python scripts/airflow_env.py --home $(RUNTIME)/airflow admin-password-file)"
	$(AIRFLOW_VENV)/bin/python scripts/airflow_env.py --home $(RUNTIME)/airflow --port $(AIRFLOW_PORT) \
	  run -- airflow standalone

# The whole suite but the tests marked chaos (the broker restart and the object-store outage: make chaos).
test: setup ## start the services, run the test suite (all but make chaos's) on $TEST_WORKERS workers, stop the services
	@status=0; \
	$(PYTHON) scripts/services.py up && $(PYTHON) -m pytest -n $(TEST_WORKERS) --dist loadgroup \
	  --no-loadscope-reorder -m "not chaos" --junitxml=$(TEST_REPORTS)/junit.xml $(PYTEST_ARGS) || status=$$?; \
	$(PYTHON) scripts/services.py down; \
	exit $$status

# The fault tests at full length (tests/integration/test_faults.py): the stream job SIGKILLed CHAOS_KILLS times
# (a third right after a Bronze commit, a third after a Silver one, a third at random moments) under a steady
# producer load, plus the broker restart, object-store outage, producer SIGKILL and data-loss runbook tests.
# make test runs the same file with 2 kills (after a Bronze and after a Silver commit) and without the tests marked
# chaos (the broker restart and the object-store outage, on a Kafka and a MinIO of their own). CHAOS_SEED picks the
# random moments.
CHAOS_KILLS ?= 12
chaos: setup ## the fault tests at full length: 12 SIGKILLs of the stream under load, broker and MinIO restarts (~15 min)
	@status=0; \
	$(PYTHON) scripts/services.py up && CHAOS_KILLS=$(CHAOS_KILLS) $(PYTHON) -m pytest tests/integration/test_faults.py \
	  --junitxml=$(TEST_REPORTS)/junit-chaos.xml $(PYTEST_ARGS) || status=$$?; \
	$(PYTHON) scripts/services.py down; \
	exit $$status

# Without the lake's credentials: the unit tests need neither services nor secrets.
test-unit: setup ## unit tests only, on 2 workers (no services, no credentials needed; about 3 minutes)
	env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY $(PYTHON) -m pytest tests/unit -n 2 --dist loadgroup \
	  --junitxml=$(TEST_REPORTS)/junit-unit.xml $(PYTEST_ARGS)

lock: $(UV) ## re-resolve Python and jar pins (maintainers)
	$(UV) lock
	$(UV) lock --project airflow
	$(PYTHON) jars/lock.py

clean: services-down spark-cluster-down ## delete the runtime folder (.lake) and the environments (.venv, .venv-airflow); caches stay
	rm -rf $(RUNTIME) .venv $(AIRFLOW_VENV)
