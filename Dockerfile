# The swarm-lb image, built from source the way users expect:
#
#   docker build -t swarm-lb .
#
# A Rust build stage makes one statically linked binary (glibc, crt-static: no libc needed at
# run time); the result is FROM scratch with that binary alone (~11 MB), like the image
# scripts/images.sh builds from the same binary without a registry. Needs network access for
# the base image and crates.io (the test machines have neither: there scripts/images.sh builds
# the image from a local cargo build instead).
ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# Manifests first, so the dependency layer is cached while only sources change.
COPY Cargo.toml Cargo.lock ./
COPY integration/testapp/Cargo.toml integration/testapp/
COPY integration/e2e/Cargo.toml integration/e2e/
COPY integration/bench/Cargo.toml integration/bench/
COPY integration/testkit/Cargo.toml integration/testkit/
RUN mkdir -p src integration/testapp/src integration/e2e/src integration/bench/src integration/testkit/src \
    && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && for d in testapp e2e bench testkit; do touch integration/$d/src/lib.rs; echo 'fn main() {}' > integration/$d/src/main.rs; done \
    && cargo fetch --locked
COPY . .
RUN target=$(uname -m)-unknown-linux-gnu \
    && RUSTFLAGS='-C target-feature=+crt-static' \
       cargo build --locked --release --target "$target" --bin swarm-lb \
    && cp "target/$target/release/swarm-lb" /swarm-lb \
    && /swarm-lb --version

FROM scratch
# The trust store of ssl_backend_tls_verify=required and of the ACME client (scratch has none).
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=build /swarm-lb /usr/local/bin/swarm-lb
ENTRYPOINT ["/usr/local/bin/swarm-lb"]
CMD ["run"]
