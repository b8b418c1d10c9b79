# ci-runner image: Node 20 for the runner, Python 3 and git for the builds it runs.
FROM node:20-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends git python3 python3-venv ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY proto ./proto
COPY python ./python
COPY src ./src
COPY tsconfig.json ./
RUN useradd --create-home --uid 10001 runner && mkdir -p /data/artefacts /data/cache && chown -R runner /data
USER runner
ENV ARTEFACT_DIR=/data/artefacts CACHE_DIR=/data/cache NODE_ENV=production
CMD ["node", "--import", "tsx", "src/worker/main.ts"]
