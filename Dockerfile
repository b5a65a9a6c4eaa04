# syntax=docker/dockerfile:1
# Baton in a container: the TypeScript is built once, and the image that runs it holds the build,
# the production dependencies and nothing else. The config is mounted, not baked in:
#
#   docker build -t baton .
#   docker run --rm -p 8080:8080 -v "$PWD/examples/checkout/baton.yaml:/etc/baton/baton.yaml:ro" baton
#
# Every core of the container: docker run … baton serve /etc/baton/baton.yaml --workers auto

# Build: every dependency (TypeScript among them), then dist/.
FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# The dependencies the gateway runs with, installed apart so that no dev dependency reaches the image.
FROM node:24-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts && npm cache clean --force

# Runtime.
FROM node:24-slim
ENV NODE_ENV=production
WORKDIR /app
COPY package.json ./
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY bin ./bin
COPY schema/baton.schema.json ./schema/
# The image's `node` user, by number: Kubernetes' runAsNonRoot can only check a numeric user.
USER 1000:1000
# gateway.port of the config; change it here and in HEALTHCHECK if yours differs.
EXPOSE 8080
# Baton drains on SIGTERM (README "Shutting down"); docker stop waits 10 s unless given -t.
STOPSIGNAL SIGTERM
# Liveness: 200 while the process serves. No curl in the slim image: Node's fetch.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:8080/health').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# node itself is PID 1 (no npm, no shell in between), so the signals reach Baton.
ENTRYPOINT ["node", "/app/bin/baton.js"]
CMD ["serve", "/etc/baton/baton.yaml"]
