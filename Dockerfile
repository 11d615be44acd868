# syntax=docker/dockerfile:1

# claimd image: `claimd serve` by default; docker-compose.yml runs the same
# image as `claimd worker`. Migrations are embedded in the binary, so the
# image holds the binary and nothing else.

# golang:1.26 follows the newest 1.26.x. The official image sets
# GOTOOLCHAIN=local, so it must be at least go.mod's `go 1.26.8`; a floating
# minor tag stays at or above it where a pinned patch tag could fall behind.
FROM golang:1.26 AS build
WORKDIR /src
ENV CGO_ENABLED=0
# Modules first: this layer is rebuilt only when go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
# .git is not in the build context (.dockerignore), so the binary carries no
# VCS stamp: claimd_build_info reports revision="unknown" for this image.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags "-s -w" -o /out/claimd ./cmd/claimd

# Final stage: distroless static, nonroot (uid 65532). About 2 MB besides the
# binary, CA certificates and tzdata included (for sslmode=require / amqps),
# and no shell, package manager or wget. The price: a container healthcheck
# cannot run inside it, and claimd has no self-check subcommand. So
# docker-compose.yml gives claimd and worker no healthcheck: they start once
# Postgres, Redis and RabbitMQ are healthy (depends_on: service_healthy), the
# restart policy brings them back if they exit, and Prometheus scrapes their
# /metrics (`up` is 0 while one is down; see prometheus/alerts.yml). A
# busybox-based image would allow `wget /readyz` but would put a shell into
# the production image for a local-development convenience.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/claimd /claimd
USER nonroot:nonroot
# 8000: `claimd serve` (HTTP_ADDR). 8001: `claimd worker` (WORKER_ADDR:
# /metrics, /healthz, /readyz).
EXPOSE 8000 8001
ENTRYPOINT ["/claimd"]
CMD ["serve"]
