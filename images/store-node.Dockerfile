# syntax=docker/dockerfile:1
# Image for store-node: the replicated, Redis-compatible session store server.
# Build from the repository root:
#   docker build -f images/store-node.Dockerfile -t sessionstore/store-node:0.1.0 .
# Ports: RESP 6379, peer replication 7379, HTTP 8080 (session API, /metrics, /healthz, /readyz).
#
# The binary is linked statically against glibc (-C target-feature=+crt-static on the gnu target,
# the same way hack/build-images.sh builds it for the local cluster), so the runtime image needs
# no libc: distroless/static gives CA certificates, /etc/passwd with the nonroot user (65532),
# tzdata, and no shell or package manager.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS builder
WORKDIR /src
# The whole workspace (filtered by store-node.Dockerfile.dockerignore): cargo needs every member's
# manifest to resolve the workspace, and Cargo.lock pins every dependency (--locked).
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    set -eu; \
    target="$(rustc -vV | sed -n 's/^host: //p')"; \
    RUSTFLAGS="-C target-feature=+crt-static" \
      cargo build --release --locked --target "$target" -p store-node; \
    install -D -m 0755 "target/$target/release/store-node" /out/store-node

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="store-node" \
      org.opencontainers.image.description="store-node: the replicated, Redis-compatible session store server" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/store-node /usr/local/bin/store-node
# Numeric, so Kubernetes' runAsNonRoot check can verify it without reading /etc/passwd.
USER 65532:65532
EXPOSE 6379 7379 8080
ENTRYPOINT ["/usr/local/bin/store-node"]
