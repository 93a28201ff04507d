# syntax=docker/dockerfile:1
# deploy-tracker: a multi-stage build. The first stage compiles the dependencies
# against stub sources so that layer is reused until Cargo.toml or Cargo.lock change.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY migration/Cargo.toml migration/Cargo.toml
# Targets the manifest names must exist for cargo to read it.
COPY benches benches
COPY examples examples
RUN mkdir -p src migration/src \
 && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && echo 'fn main() {}' > migration/src/main.rs && touch migration/src/lib.rs \
 && cargo build --release --locked --bin deploy-tracker \
 && rm -rf src migration/src
COPY src src
COPY migration/src migration/src
# Newer mtimes than the stub build's outputs, so cargo rebuilds our crates.
RUN touch src/main.rs src/lib.rs migration/src/lib.rs \
 && cargo build --release --locked --bin deploy-tracker

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data --shell /usr/sbin/nologin deploy \
 && mkdir -p /data && chown deploy:deploy /data
COPY --from=build /src/target/release/deploy-tracker /usr/local/bin/deploy-tracker
USER deploy
WORKDIR /data
VOLUME ["/data"]
ENV DATABASE_URL="sqlite:///data/deploy-tracker.db?mode=rwc" \
    BIND="0.0.0.0:8080" \
    LOG_FORMAT="json"
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD curl -fsS http://127.0.0.1:8080/healthz || exit 1
ENTRYPOINT ["deploy-tracker"]
CMD ["serve"]
