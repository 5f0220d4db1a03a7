# The front door: `make demo` and `make test` install what they need, start the local
# services and run. Everything is idempotent; a second call reuses what is there.
SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never
# .env.example holds every setting's local default; .env (yours, git-ignored) overrides it,
# so a setting added to .env.example later reaches an older .env too.
RUN := uv run --frozen --env-file .env.example --env-file .env
SERVICES := $(RUN) python -m devstack.services
export DAGSTER_HOME := $(CURDIR)/.dagster_home

.PHONY: install services status down demo test dev pools lint bench seed token worker browser

.env:
	cp .env.example .env

install: .env
	@command -v uv >/dev/null || python3 -m pip install --quiet uv
	# Every run worker and code server imports Dagster and this package afresh: bytecode
	# compiled once at install halves that (uv compiles nothing by default, and Python cannot
	# cache it where PYTHONDONTWRITEBYTECODE is set or site-packages is read-only).
	uv sync --frozen --compile-bytecode
	uv run --frozen python -m compileall -q integration_patterns

services: install
	$(SERVICES) up

status: install
	$(SERVICES) status

down: install
	$(SERVICES) down

# The instance lives in .dagster_home, using this repository's dagster.yaml.
$(DAGSTER_HOME)/dagster.yaml:
	mkdir -p $(DAGSTER_HOME) && ln -sf $(CURDIR)/dagster.yaml $@

pools: services $(DAGSTER_HOME)/dagster.yaml
	for pool in postgres mongodb kafka rabbitmq; do \
	  $(RUN) dagster instance concurrency set $$pool 4 >/dev/null; done
	# The partner API's rate budget is per process: one run at a time keeps it honest.
	$(RUN) dagster instance concurrency set partner_api 1 >/dev/null

demo: pools
	$(RUN) python -m devstack.demo

seed: services
	$(RUN) python -m devstack.sample_data --preset $(or $(PRESET),small)

test: services browser
	$(RUN) pytest $(PYTEST_ARGS)

# Debian's chromium, which the lineage browser test drives through Playwright (never a
# browser downloaded by `playwright install`).
browser:
	command -v chromium >/dev/null || (apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium)

# The UI and daemon, plus the two ASGI services that sit outside Dagster: the webhook
# receiver (:8090) and the API gateway (:8080), stopped together with dg dev.
dev: pools
	@trap 'kill $$receiver $$gateway 2>/dev/null' EXIT; \
	$(RUN) python -m integration_patterns.services.webhook_receiver --port 8090 & receiver=$$!; \
	$(RUN) python -m integration_patterns.services.gateway --port 8080 & gateway=$$!; \
	$(RUN) dg dev --host 127.0.0.1 --port 3000

# One Celery worker for customer_enrichment_celery, in .workers/<NAME>/ (start two, in two
# shells with different NAMEs, for two). It needs the Dagster instance's storage to be shared.
worker: services
	$(RUN) python -m devstack.celery_workers $(if $(NAME),--name $(NAME))

lint: install
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) pyright

bench: services
	command -v wrk >/dev/null || apt-get install -y wrk
	$(RUN) python -m bench $(BENCH)

# A development JWT for the gateway (GATEWAY_JWT_SECRET, audience and issuer from .env):
# `make -s token`, or `make -s token ARGS="--scope jobs:read --ttl 600"`.
token: install
	@$(RUN) python -m devstack.token $(ARGS)
