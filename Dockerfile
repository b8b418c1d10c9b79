# ci-runner: Node 24 LTS for the runner, Python 3 and git for the builds it runs, bubblewrap and slirp4netns for the
# build sandbox. Multi-stage: compile, then a slim, non-root runtime with production dependencies only. Build with
# `docker build -t ci-runner .`. Builds run in user namespaces as the non-root `runner` user (see docker-compose.yml
# for the security options the sandbox needs inside a container).

FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY proto ./proto
COPY python ./python
COPY src ./src
COPY scripts ./scripts
RUN npm run build && npm prune --omit=dev

FROM node:24-bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends git python3 python3-venv ca-certificates bubblewrap slirp4netns util-linux \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY scripts/kafka-acls.mjs ./scripts/kafka-acls.mjs
RUN useradd --create-home --uid 10001 runner \
 && mkdir -p /data/artefacts /data/cache /data/work \
 && chown -R runner /data
USER runner
ENV NODE_ENV=production ARTEFACT_DIR=/data/artefacts CACHE_DIR=/data/cache WORK_DIR=/data/work
EXPOSE 9700 9701 9800
CMD ["node", "dist/src/worker/main.js"]
