# ai-api-gateway container: build with cmake (Pingora's zlib-ng), run on slim
# Debian as a non-root user. The build steps mirror .ci/run.
#   docker build -t ai-api-gateway:latest .
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY tests ./tests
RUN cargo build --release --locked --bin ai-api-gateway --bin mock-upstream

FROM debian:bookworm-slim
# redis-tools: the runbook's Redis check (`redis-cli -h redis-service ping`)
# runs from inside the gateway's container.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates redis-tools \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin gateway
COPY --from=build /src/target/release/ai-api-gateway /usr/local/bin/ai-api-gateway
COPY --from=build /src/target/release/mock-upstream /usr/local/bin/mock-upstream
COPY conf/gateway.yaml /etc/ai-api-gateway/gateway.yaml
USER 10001
EXPOSE 8080 9090
# SIGTERM drains: requests and streams in flight are served until they end
# (at most server.drain_timeout), then the process exits.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/ai-api-gateway"]
CMD ["-c", "/etc/ai-api-gateway/gateway.yaml"]
