# syntax=docker/dockerfile:1
# Build a static (musl) binary, then ship it alone in a distroless image as non-root.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends musl-tools cmake clang \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src tests/e2e && echo 'fn main() {}' > src/main.rs && touch src/lib.rs tests/e2e/main.rs \
    && cargo build --locked --release --target x86_64-unknown-linux-musl \
    && rm -rf src
COPY src ./src
COPY crds ./crds
RUN touch src/main.rs src/lib.rs \
    && cargo build --locked --release --target x86_64-unknown-linux-musl \
    && cp target/x86_64-unknown-linux-musl/release/iamwright /iamwright

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /iamwright /iamwright
# 65532 is distroless' "nonroot" user; the chart also sets runAsNonRoot.
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["/iamwright"]
CMD ["run"]
