# syntax=docker/dockerfile:1
# The `shop` binary, run once per service by compose.yml (`shop serve user`, …) and by
# deploy/k8s/. BuildKit's cache mounts keep the crate registry and the target directory between
# builds, so a change to one source file rebuilds that crate and the binary, not the ~480
# dependencies (the mounts are not part of any layer; the binary is copied out of them).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin shop \
 && cp target/release/shop /usr/local/bin/shop

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/shop --create-home shop
COPY --from=build /usr/local/bin/shop /usr/local/bin/shop
USER 10001
WORKDIR /var/lib/shop
ENV SHOP_BIND_HOST=0.0.0.0 SHOP_DATA_DIR=/var/lib/shop
ENTRYPOINT ["shop"]
