# syntax=docker/dockerfile:1
# The operator's image: one static (musl) binary and the CA bundle, nothing else, run as
# the non-root user 65532 (the chart also sets runAsNonRoot and a read-only root
# filesystem).
#
# Two ways to feed the final stage, one final stage:
#   docker build .                       compiles the binary in the `build` stage;
#   --build-arg BINARY=prebuilt, with a context holding `iamwright` and
#   `ca-certificates.crt`                takes a binary built outside (hack/image.sh does
#                                        this with the same cargo command, then buildah;
#                                        no base image needs pulling, so it runs offline).
# Builders skip the stage they do not need, so the image the tests run is this file's.
ARG BINARY=build

FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends musl-tools cmake clang \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src tests/e2e tests/node && echo 'fn main() {}' > src/main.rs && touch src/lib.rs tests/e2e/main.rs tests/node/main.rs \
    && cargo build --locked --release --target x86_64-unknown-linux-musl --bin iamwright \
    && rm -rf src
COPY src ./src
COPY crds ./crds
RUN touch src/main.rs src/lib.rs \
    && cargo build --locked --release --target x86_64-unknown-linux-musl --bin iamwright \
    && mkdir /out \
    && cp target/x86_64-unknown-linux-musl/release/iamwright /out/iamwright \
    && cp /etc/ssl/certs/ca-certificates.crt /out/ca-certificates.crt

FROM scratch AS prebuilt
COPY iamwright ca-certificates.crt /out/

FROM ${BINARY} AS binary

FROM scratch
COPY --from=binary /out/iamwright /iamwright
# The AWS and Kubernetes clients verify TLS against the system's roots.
COPY --from=binary /out/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
USER 65532:65532
EXPOSE 8080 8081
ENTRYPOINT ["/iamwright"]
CMD ["run"]
