# Multi-stage build: compile with the Rust toolchain, ship only the binary, its CA roots and the
# example jobs on a distroless base (no shell, no compiler). Entry point: cxlake.
FROM rust:1-slim-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends make && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# Build settings (.cargo/config.toml: jemalloc's C build without debug info).
COPY .cargo ./.cargo
COPY src ./src
# The workspace's other crate: the Salesforce emulator `cxlake emulator` links (its objects/ are embedded).
COPY crates ./crates
COPY vendor ./vendor
COPY schemas ./schemas
# `cxlake init` embeds the production job files as its templates.
COPY jobs ./jobs
RUN cargo build --profile dist --locked && strip target/dist/cxlake

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/dist/cxlake /usr/local/bin/cxlake
COPY jobs /jobs
WORKDIR /jobs
ENTRYPOINT ["/usr/local/bin/cxlake"]
CMD ["--help"]
