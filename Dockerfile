# One image for every node; the mode follows from the environment (see cluster.config.ts).
#
#   docker build -t actor-im .
#   docker run -e IM_JWT_SECRET=<a long random secret> -p 9001:9001 actor-im
#
# The image sets NODE_ENV=production, so a node refuses to start with the development JWT secret.
# Base: Node 22 LTS. The uWebSockets.js build the project uses ships native binaries up to Node 20;
# on Node 22 the gateway runs its bundled `ws` fallback (the start log says engine
# "uWebSockets.js ws-fallback"): same protocol, lower throughput per node.

# ---- build: compiler toolchain, so that `npm ci` can compile better-sqlite3 when no prebuilt binary fits
FROM node:22-bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
# Every dependency first: esbuild (a dev dependency) bundles the web app into web/dist; then the
# dev dependencies go, so the runtime stage copies production modules only.
RUN npm ci --no-audit --no-fund \
 && node -e "require('better-sqlite3')(':memory:').close()"
COPY . .
RUN npm run build:web && npm prune --omit=dev --no-audit --no-fund

# ---- runtime: node, the installed modules and the sources; no compiler
FROM node:22-bookworm-slim
ENV NODE_ENV=production IM_PORT=9001 IM_DATA_DIR=/data
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY . .
COPY --from=build /app/web/dist ./web/dist
# Code stays owned by root (read-only for the node process); only the data directory is writable.
RUN mkdir -p /data && chown node:node /data
USER node
EXPOSE 9001
# node itself does the check: the slim image has no curl or wget.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.IM_PORT||9001)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# node directly as PID 1 (not npm start): a shell in between would not forward SIGTERM, and the
# graceful shutdown (finish commits, kick sockets with "shutdown") needs it. The node flags are
# cluster.config.ts NODE_FLAGS (a young generation of 3 x 8 MiB: idle sockets cost less memory).
ENTRYPOINT ["node", "--max-semi-space-size=8", "--import", "tsx"]
CMD ["main.ts"]
