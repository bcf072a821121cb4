# Build: a release binary, with dependencies cached in their own layer.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked || true
COPY src ./src
COPY migrations ./migrations
# The manifest names the benchmarks as targets; they are not built, but must be there.
COPY benches ./benches
RUN touch src/main.rs src/lib.rs && cargo build --release --locked

# Run: a small Debian image with CA certificates (for Entra ID and ARM over TLS), as a
# non-root user whose home holds the SQLite file and the dev key when no volume is mounted.
FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/jitgate --create-home jitgate
COPY --from=build /src/target/release/jitgate /usr/local/bin/jitgate
USER jitgate
WORKDIR /var/lib/jitgate
ENV JITGATE_LISTEN=0.0.0.0:8080 \
    JITGATE_DATA_DIR=/var/lib/jitgate \
    JITGATE_DATABASE_URL=sqlite:///var/lib/jitgate/jitgate.db \
    JITGATE_LOG_FORMAT=json
EXPOSE 8080
VOLUME ["/var/lib/jitgate"]
ENTRYPOINT ["jitgate"]
CMD ["serve"]
