# cocreate: build with the Rust image, run as a non-root user on a small Debian base.
#
#   docker build -t cocreate .
#   docker run -d --name cocreate -p 8080:8080 -v cocreate-data:/data \
#     -e GITLAB_URL=https://gitlab.example.com -e GITLAB_TOKEN=... -e COCREATE_WEBHOOK_SECRET=... \
#     --stop-timeout 30 cocreate
#
# Your own policies and templates: mount them over /etc/cocreate/policies and
# /etc/cocreate/templates (the image carries the examples).
#
# The pipeline's scheduled jobs (.gitlab-ci.yml: cca-check, reconcile, nudge, report) run in this
# image too, so it must keep `cocreate` on PATH, the CA certificates and a shell; they reset
# the entrypoint and point COCREATE_POLICIES/COCREATE_TEMPLATES at their checkout.
# tests/dockerfile.rs checks that the pipeline and this file agree.

# --- build ------------------------------------------------------------------------------------
# Same Debian release as the run stage, so the binary's glibc matches.
FROM rust:1.95-slim-trixie AS build
WORKDIR /src
# Dependencies first: this layer is rebuilt only when Cargo.toml or Cargo.lock change.
COPY Cargo.toml Cargo.lock ./
# Build settings (the bundled SQLite's fallocate flag).
COPY .cargo ./.cargo
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY src ./src
COPY policies ./policies
COPY templates ./templates
# Cargo compares mtimes: make sure the real sources count as newer than the stub build.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked \
    && ./target/release/cocreate --policies policies policies check

# --- run --------------------------------------------------------------------------------------
FROM debian:trixie-slim AS run
# ca-certificates: HTTPS to GitLab. Nothing else: the health check below uses bash's /dev/tcp,
# so the image needs no curl or wget.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 cocreate \
    && useradd --system --uid 10001 --gid cocreate --home-dir /data --no-create-home \
       --shell /usr/sbin/nologin cocreate \
    && mkdir -p /data /etc/cocreate \
    && chown cocreate:cocreate /data
COPY --from=build /src/target/release/cocreate /usr/local/bin/cocreate
COPY policies /etc/cocreate/policies
COPY templates /etc/cocreate/templates
ENV COCREATE_LISTEN=0.0.0.0:8080 \
    COCREATE_DATA=/data \
    COCREATE_POLICIES=/etc/cocreate/policies \
    COCREATE_TEMPLATES=/etc/cocreate/templates \
    COCREATE_LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 8080
USER 10001:10001
WORKDIR /data
# GET /healthz on the port of COCREATE_LISTEN; healthy on an HTTP 200.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${COCREATE_LISTEN##*:} && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
# SIGTERM: stop accepting, let in-flight events finish (20 s), release the rest.
STOPSIGNAL SIGTERM
ENTRYPOINT ["cocreate"]
CMD ["serve"]
