# syntax=docker/dockerfile:1
# Every Kip image but the deployer and the tester, one target each, built from the repository root
# by `make app/build` (docker build --target <target> .). The compile and dependency stages are
# shared, so they are built once for all four images. docs/marketplace.md describes the images.

# Compile: the same `tsc -p tsconfig.build.json` as `make build`, into /src/dist.
FROM node:22-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY lib lib
COPY provider provider
COPY cell-agent cell-agent
COPY image-cache image-cache
COPY usage-reporter usage-reporter
COPY emulators emulators
COPY scripts scripts
COPY test/support test/support
RUN npx tsc -p tsconfig.build.json

# Runtime dependencies only: no compiler, linters or test tools in the images.
FROM node:22-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

FROM node:22-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
# package.json carries "type": "module", which the compiled ES modules need.
COPY package.json ./
COPY --from=deps /app/node_modules node_modules
COPY --from=build /src/dist/lib dist/lib

# Image `kip`: the provider (its price table is emitted by tsc beside the pricing module).
# The chart runs it as 65532 with a read-only root filesystem; numeric, so runAsNonRoot can check it.
FROM runtime AS provider
COPY --from=build /src/dist/provider dist/provider
USER 65532:65532
ENTRYPOINT ["node", "dist/provider/main.js"]
CMD ["--config", "/etc/kip/config.yaml"]

# Image `kip/cell-agent`: the agent each cell VM runs. runc runs the pod's containers and
# iproute2 sets up the cell's network; it runs as root because runc creates namespaces and
# cgroups and mounts the pod's volumes.
FROM runtime AS cell-agent
RUN apt-get update \
 && apt-get install -y --no-install-recommends runc iproute2 ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/dist/cell-agent dist/cell-agent
ENTRYPOINT ["node", "dist/cell-agent/main.js"]

# Image `kip/ubbagent`: the usage reporter, configured like Google's ubbagent container, with
# ubbagent's defaults so the image runs with only the config file mounted.
FROM runtime AS usage-reporter
COPY --from=build /src/dist/usage-reporter dist/usage-reporter
ENV AGENT_CONFIG_FILE=/etc/ubbagent/config.yaml \
    AGENT_STATE_DIR=/var/lib/ubbagent \
    AGENT_LOCAL_PORT=6080
RUN mkdir -p /var/lib/ubbagent && chown 65532:65532 /var/lib/ubbagent
USER 65532:65532
ENTRYPOINT ["node", "dist/usage-reporter/main.js"]

# Image `kip/image-cache-controller`: fills the image cache share; nfs-common for
# --filestore-instance when the share is not mounted as a volume. It reuses the provider's
# informer and work queue.
FROM runtime AS image-cache
RUN apt-get update && apt-get install -y --no-install-recommends nfs-common \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/dist/provider dist/provider
COPY --from=build /src/dist/image-cache dist/image-cache
USER 65532:65532
ENTRYPOINT ["node", "dist/image-cache/main.js"]
