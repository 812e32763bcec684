# Build stage: release binary with the project's release profile (fat LTO).
FROM rust:1-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake libssl-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY vendor vendor
COPY src src
COPY benches benches
COPY tests tests
RUN cargo build --release --locked --bin gatehouse

# Runtime stage: slim Debian with OpenSSL, non-root.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends libssl3 ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin gatehouse \
 && install -d -o gatehouse -m 0700 /var/lib/gatehouse/acme
COPY --from=build /src/target/release/gatehouse /usr/local/bin/gatehouse
COPY conf/gatehouse.toml /etc/gatehouse/gatehouse.toml
USER gatehouse
# [acme] storage: the account key and issued certificates outlive the container.
VOLUME /var/lib/gatehouse/acme
EXPOSE 8080 9901
ENTRYPOINT ["/usr/local/bin/gatehouse"]
CMD ["run", "-c", "/etc/gatehouse/gatehouse.toml"]
