# Thin by design: every target calls the `lab` CLI, pytest or a script.
.DEFAULT_GOAL := help
VENV := .venv
LAB  := $(VENV)/bin/lab
PY   := $(VENV)/bin/python

.PHONY: help venv up down status logs env train promote score genai users backup restore gc model-image k8s test test-fast bench lock clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z0-9-]+:.*## / {printf "  %-12s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

venv: ## Create or update .venv from the lock file
	@sh scripts/bootstrap.sh

up: venv ## Bring the stack up (Compose where it can run: engine, Compose v2.20+, base images; else native, saying why) and wait until healthy
	@$(LAB) up

down: venv ## Stop the stack (data is kept)
	@$(LAB) down

status: venv ## Each service and its health
	@$(LAB) status

logs: venv ## Tail of every service's log (SERVICE=name for one)
	@$(LAB) logs $(SERVICE)

env: venv ## Print exports for MLflow clients: eval "$(make -s env)"
	@$(LAB) env

# The lab's models are listed once, in src/mlflow_lab/trainers.py (asked of the lab's Python).
MODELS ?= $(shell $(PY) -c 'from mlflow_lab.trainers import MODELS; print(*MODELS)' 2>/dev/null)
MODEL  ?= $(firstword $(MODELS))
SAMPLE := data/$(MODEL)-sample.csv
INPUT  ?= $(SAMPLE)

train: venv ## Train MODELS (default: every lab model) against the lab and register versions
	@for model in $(MODELS); do $(LAB) job train $$model || exit 1; done

# A refused challenger is a normal outcome: reported, exit 0; STRICT=1 makes it exit 2 (CI gates).
promote: venv ## Promote the newest version of each of MODELS if it beats Production (FORCE=1 overrides, STRICT=1 fails on a refusal)
	@$(LAB) job promote $(MODELS) $(if $(FORCE),--force) $(if $(STRICT),--strict)

# Only the default sample is a make target: INPUT may be an s3:// or mlflow-artifacts:/ URI.
score: venv $(filter $(SAMPLE),$(INPUT)) ## Batch-score INPUT (path or URI; default: a sample, made if missing) with models:/MODEL/Production
	@$(LAB) job score $(INPUT) --model-uri models:/$(MODEL)/Production

data/%-sample.csv:
	@$(LAB) job sample-input $* $@

# docs/genai-workshop.md: runs from this venv under either runner; OPENAI_API_KEY set: a real LLM answers.
genai: venv ## GenAI workflow: a Q&A app over docs/ (prompt from the registry, traces, evaluation, model, promotion, served answer to QUESTION)
	@$(LAB) job genai run $(if $(QUESTION),--question "$(QUESTION)")

users: venv ## Accounts (MLflow's): list; ADD="alice bob" or COUNT=20 (attendee01..20) adds as ROLE (member; viewer, admin), passwords shown once; REMOVE="bob"
	@$(LAB) users $(if $(REMOVE),remove $(REMOVE),$(if $(ADD)$(COUNT),add $(ADD) $(if $(COUNT),--count $(COUNT)) $(if $(ROLE),--role $(ROLE)),list))

backup: venv ## Archive the running lab (database, artifacts, manifest) into backups/ (DIR=... elsewhere); .env is not in it
	@$(LAB) backup $(if $(DIR),--dir $(DIR))

restore: venv ## Restore FILE=backups/....tar onto the running lab (refuses a lab with runs unless FORCE=1)
	@$(LAB) restore $(FILE)

gc: venv ## Remove for good what was deleted (runs, experiments, logged models) at least OLDER_THAN ago (default LAB_GC_OLDER_THAN), artifacts included
	@$(LAB) gc $(if $(OLDER_THAN),--older-than $(OLDER_THAN))

model-image: venv ## Build an image serving models:/MODEL/Production (V2, /invocations, SageMaker's `serve`); no tracking server needed at run time
	@$(LAB) model-image models:/$(MODEL)/Production

K8S ?= all-in-one
k8s: venv ## Print the Kubernetes manifests of K8S (all-in-one, external or kserve) with .env's settings: make -s k8s | kubectl apply -f -
	@$(LAB) k8s render $(K8S)

# docs/testing.md: behaviour tests once (Compose if an engine answers), contract tests per
# runner; the two runners' tests side by side in TEST_WORKERS processes (one stack each).
TEST_WORKERS ?= 2
test: venv ## Run every test, as CI does (starts its own stacks on free ports and removes them)
	@$(PY) -m pytest -n $(TEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

test-fast: venv ## Unit and static checks only, no stack (the edit-test loop, under a minute)
	@$(PY) -m pytest tests/unit tests/static $(PYTEST_ARGS)

bench: venv ## Benchmarks, ratios measured side by side in one run (BENCH="scoring tracking" picks some; BENCH_RUNNER=compose)
	@$(PY) -m bench $(BENCH)

lock: venv ## Re-resolve requirements.lock and requirements-dev.lock from pyproject.toml
	@$(PY) -m pip install --quiet pip-tools
	@$(VENV)/bin/pip-compile --quiet --strip-extras --no-emit-index-url --no-emit-find-links -o requirements.lock pyproject.toml
	@$(VENV)/bin/pip-compile --quiet --strip-extras --no-emit-index-url --no-emit-find-links --extra test -o requirements-dev.lock pyproject.toml

clean: venv ## Stop the stack and delete its data (asks first; FORCE=1 skips the question)
	@$(LAB) clean
