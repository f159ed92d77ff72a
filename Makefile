# node-levels-starter: every target is one command; `make` alone lists them.
.DEFAULT_GOAL := help
SHELL := /bin/bash

# Pass LEVEL (and any other setting) through: `make run LEVEL=3 WORKERS=4`.
export LEVEL
export WORKERS
PID_FILE ?= .data/server.pid
export PID_FILE

SOURCES := $(shell find src -name '*.ts') tsconfig.json

.PHONY: help install build run worker dev test lint typecheck format migrate clean reload scale-up scale-down status bench

help: ## List every target
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

node_modules/.package-lock.json: package.json package-lock.json
	npm ci
	@touch $@

install: node_modules/.package-lock.json ## Install dependencies (npm ci) if needed

dist/main.js: node_modules/.package-lock.json $(SOURCES)
	npm run build
	@touch $@

build: dist/main.js ## Compile TypeScript to dist/

run: dist/main.js ## Build and start at LEVEL (default 1); embedded PostgreSQL when DATABASE_URL is unset
	@mkdir -p .data
	node dist/main.js

worker: dist/main.js ## Run one task-worker process (what a separate container or Deployment runs)
	node dist/worker.js

dev: install ## Start with tsx watch (reloads on change), LEVEL=1
	npm run dev

test: install ## Build, then run the whole test suite (real PostgreSQL, real processes, real HTTP)
	npm test

lint: install ## Biome lint and format check
	npm run lint

typecheck: install ## Type-check sources, tests and scripts
	npm run typecheck

format: install ## Apply Biome formatting and safe fixes
	npm run lint:fix

migrate: dist/main.js ## Apply pending SQL migrations (embedded PostgreSQL when DATABASE_URL is unset)
	node dist/migrate.js

reload: ## LEVEL>=3: zero-downtime rolling reload of a server started by `make run` (SIGHUP)
	kill -HUP $$(cat $(PID_FILE))

scale-up: ## LEVEL>=3: one more worker (SIGTTIN)
	kill -TTIN $$(cat $(PID_FILE))

scale-down: ## LEVEL>=3: one worker fewer, drained gracefully (SIGTTOU)
	kill -TTOU $$(cat $(PID_FILE))

status: dist/main.js ## LEVEL>=2: workers, pids, ages, requests served, memory
	node dist/runtime/status.js

bench: install ## LEVEL 1 vs 2 vs 3 vs PM2 on the CPU-bound route, and reloads under load, as ratios
	npx tsx scripts/bench.ts

clean: ## Remove build output (keeps .data/ with the embedded database)
	rm -rf dist
