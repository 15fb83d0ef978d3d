# Build stage: compile the single `herd` binary.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libssl-dev pkg-config zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p herd && cp target/release/herd /herd

# Runtime stage: the binary plus the client tools the worker shells out to (pgbackrest
# lists and expires backups and reads recovery windows from the repository).
FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl openssh-client libssl3 \
        pgbackrest \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/herd --create-home herd
COPY --from=build /herd /usr/local/bin/herd
USER herd
WORKDIR /var/lib/herd
EXPOSE 8080
CMD ["herd", "serve"]
