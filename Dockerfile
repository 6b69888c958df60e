# One image for the control plane, the sidecar-injection webhook and the proxy
# (ghcr.io/trellis-mesh/trellis:0.1.0; deploy/kubernetes/ runs it). Build from the repo
# root: docker build -t ghcr.io/trellis-mesh/trellis:0.1.0 .
# Not built in CI here (no container runtime on these machines).

FROM node:20-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: no dependency runs code at install; `prepare` (tsc) runs below.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
COPY test ./test
COPY bench ./bench
RUN npx tsc -p tsconfig.json

FROM node:20-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY bin ./bin
COPY dashboard ./dashboard
COPY deploy ./deploy
COPY schema ./schema
COPY examples/shop ./examples/shop
COPY --from=build /src/dist ./dist
# The proxy's uid in injected pods is 1337 (set by the pod's securityContext); the
# control plane runs as 10001. Neither needs anything of root.
USER 10001:10001
ENTRYPOINT ["node", "/app/bin/trellis.js"]
