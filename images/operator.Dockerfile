# syntax=docker/dockerfile:1
# Image for sessionstore-operator: the SessionCluster controller.
# Build from the repository root:
#   docker build -f images/operator.Dockerfile -t sessionstore/operator:0.1.0 .
# Ports: HTTP 8080 (/metrics, /healthz, /readyz).
#
# The binary is linked statically against glibc (-C target-feature=+crt-static on the gnu target,
# the same way hack/build-images.sh builds it for the local cluster), so the runtime image needs
# no libc: distroless/static gives CA certificates, /etc/passwd with the nonroot user (65532),
# tzdata, and no shell or package manager.

ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS builder
WORKDIR /src
# The whole workspace (filtered by operator.Dockerfile.dockerignore): cargo needs every member's
# manifest to resolve the workspace, and Cargo.lock pins every dependency (--locked).
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    set -eu; \
    target="$(rustc -vV | sed -n 's/^host: //p')"; \
    RUSTFLAGS="-C target-feature=+crt-static" \
      cargo build --release --locked --target "$target" -p sessionstore-operator; \
    install -D -m 0755 "target/$target/release/sessionstore-operator" /out/sessionstore-operator

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="operator" \
      org.opencontainers.image.description="sessionstore-operator: the SessionCluster controller" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /out/sessionstore-operator /usr/local/bin/sessionstore-operator
# Numeric, so Kubernetes' runAsNonRoot check can verify it without reading /etc/passwd.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/sessionstore-operator"]
