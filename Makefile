# vistune: `make demo` runs the whole pipeline on the embedded data; `make test` runs the tests;
# `make lint` checks style and builds the docs (CI runs it before the tests).
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(abspath $(VENV))/bin

# Offline machine: telemetry off everywhere, no hub downloads, local Prefect home.
export PATH := $(BIN):$(PATH)
export PREFECT_HOME ?= $(abspath .prefect)
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS := 90
export MLFLOW_DISABLE_TELEMETRY := true
export MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR := false
export DVC_NO_ANALYTICS := 1
export HF_HUB_OFFLINE := 1
export GX_ANALYTICS_ENABLED := false
export PYTHONUNBUFFERED := 1

.PHONY: setup demo test lint browser postgres serve status up pool workers down

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -e '.[test]' 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }
	touch $@

setup: $(VENV)/.installed

demo: setup
	@echo "=== vistune demo: Prefect flow -> dvc stages -> MLflow registry ==="
	$(PY) -m flows.pipeline
	@echo; echo "=== metrics (vistune metrics; every key: vistune metrics --all or dvc metrics show) ==="
	vistune metrics
	@echo; echo "=== MLflow registry (vistune status) ==="
	vistune status
	@echo; echo "Look here:"
	@echo "  MLflow UI:   $(BIN)/mlflow ui --backend-store-uri sqlite:///$(abspath mlflow/mlflow.db) --host 127.0.0.1  -> http://127.0.0.1:5000"
	@echo "  champion:    mlflow.pyfunc.load_model('models:/vistune-classifier@champion')"
	@echo "  Prefect UI:  PREFECT_HOME=$(PREFECT_HOME) $(BIN)/prefect server start  -> http://127.0.0.1:4200 (flow runs)"
	@echo "  DVC:         vistune metrics | dvc metrics diff | dvc plots show  (data/eval/confusion_matrix.png)"
	@echo "  experiments: vistune exp --sort-by test_macro_f1  (changed params, then headline metrics; full table: dvc exp show)"

# two pytest workers, one test file each at a time (module fixtures and in-file order kept): most tests
# wait on subprocesses and servers, so the suite takes ~12 min on 2 cores instead of ~17. Files go out
# longest first (tests/conftest.py orders them; xdist's own reorder would put them last)
PYTEST_XDIST ?= -n 2 --dist loadfile --no-loadscope-reorder
test: setup browser postgres
	$(PY) -m pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

# ruff (rules in pyproject.toml) and the MkDocs site built with broken-link checking into a temp dir
lint: setup
	ruff check .
	ruff format --check .
	site=$$(mktemp -d) && trap 'rm -rf "$$site"' EXIT && mkdocs build --strict --quiet --site-dir "$$site"

# Debian chromium for the Prefect UI browser test (Playwright drives it; no browser download).
browser:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null 2>&1; } \
	  || echo "WARNING: chromium not installed (needs root + apt); tests/flows/test_prefect_ui.py will be skipped"

# Debian's PostgreSQL server binaries for the shared-infrastructure tests (MLflow + Prefect on PostgreSQL);
# the tests start their own throwaway cluster on 127.0.0.1.
postgres:
	@command -v pg_ctl >/dev/null || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 \
	  || { [ "$$(id -u)" = 0 ] && (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >/dev/null 2>&1; } \
	  || echo "WARNING: PostgreSQL not installed (needs root + apt); the PostgreSQL-backed tests will be skipped"

serve: setup  # champion over HTTP on 127.0.0.1 (SERVE_PORT=5001); request format: docs/serving.md
	vistune serve --port $(or $(SERVE_PORT),5001)

status: setup
	vistune status

# ---- local services: Prefect server + MLflow tracking UI + served deployments -------------
RUN := .run
PREFECT_PORT ?= 4200
MLFLOW_PORT ?= 5000
# MLflow backend store (runs + registry): sqlite by default; or postgresql+psycopg2://USER:PW@HOST:5432/mlflow
# (driver: pip install -e '.[postgres]'). The server serves the artifacts (mlflow-artifacts:/) from
# MLFLOW_ARTIFACTS_DESTINATION: a directory, or s3://bucket/prefix. See docs/scale-out.md.
MLFLOW_BACKEND_STORE_URI ?= sqlite:///$(abspath mlflow/mlflow.db)
MLFLOW_ARTIFACTS_DESTINATION ?= $(abspath mlflow/artifacts)
PREFECT_URL := http://127.0.0.1:$(PREFECT_PORT)
# Prefect server database: empty = sqlite in $(PREFECT_HOME); or postgresql+asyncpg://USER:PW@HOST:5432/prefect
PREFECT_DB_URL ?=
POOL ?= vistune-process
WORKERS ?= 2
WAIT = $(PY) -m flows.wait

up: setup
	mkdir -p $(RUN) mlflow/artifacts
	$(if $(PREFECT_DB_URL),PREFECT_API_DATABASE_CONNECTION_URL='$(PREFECT_DB_URL)') \
	  prefect server start --host 127.0.0.1 --port $(PREFECT_PORT) --background
	$(WAIT) $(PREFECT_URL)/api/health 120
	nohup mlflow server --host 127.0.0.1 --port $(MLFLOW_PORT) --backend-store-uri '$(MLFLOW_BACKEND_STORE_URI)' \
	  --serve-artifacts --artifacts-destination '$(MLFLOW_ARTIFACTS_DESTINATION)' \
	  > $(RUN)/mlflow.log 2>&1 & echo $$! > $(RUN)/mlflow.pid
	PREFECT_API_URL=$(PREFECT_URL)/api PREFECT_RUNNER_POLL_FREQUENCY=2 nohup $(PY) -m flows.serve \
	  > $(RUN)/serve.log 2>&1 & echo $$! > $(RUN)/serve.pid
	$(WAIT) http://127.0.0.1:$(MLFLOW_PORT)/health 120
	@echo; echo "Prefect UI:  $(PREFECT_URL)  (Deployments -> train-pipeline -> Run)"
	@echo "MLflow UI:   http://127.0.0.1:$(MLFLOW_PORT)  (Models -> vistune-classifier)"
	@echo "logs in $(RUN)/; stop everything with: make down"

# Work pool: train-pipeline-pool runs each flow run in its own git worktree (workspace=isolated),
# so `make workers` (WORKERS=2, one run each at a time) train two runs at once. Needs `make up`.
pool: setup
	PREFECT_API_URL=$(PREFECT_URL)/api prefect work-pool create $(POOL) --type process --overwrite
	PREFECT_API_URL=$(PREFECT_URL)/api $(PY) -m flows.deploy --pool $(POOL)

# `set -m`: a background job of a non-interactive shell ignores SIGINT, which the worker's SIGTERM
# handler relies on to stop; with job control each worker keeps SIGINT and gets its own process group
workers: setup
	mkdir -p $(RUN)
	set -m; for i in $$(seq 1 $(WORKERS)); do \
	  PREFECT_API_URL=$(PREFECT_URL)/api nohup prefect worker start --pool $(POOL) --type process \
	    --name vistune-worker-$$i --limit 1 > $(RUN)/worker-$$i.log 2>&1 & echo $$! > $(RUN)/worker-$$i.pid; \
	done
	@echo "$(WORKERS) workers on pool $(POOL) (logs $(RUN)/worker-*.log): prefect deployment run train-pipeline/train-pipeline-pool"

down:
	-for f in $(RUN)/worker-*.pid; do test -f $$f && kill -TERM $$(cat $$f); rm -f $$f; done; sleep 2
	-test -f $(RUN)/serve.pid && kill -TERM $$(cat $(RUN)/serve.pid) && sleep 2; rm -f $(RUN)/serve.pid
	-test -f $(RUN)/mlflow.pid && kill -TERM $$(cat $(RUN)/mlflow.pid); rm -f $(RUN)/mlflow.pid
	-prefect server stop
