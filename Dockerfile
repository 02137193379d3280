# The `shop` binary, run once per service by compose.yml (`shop serve user`, …).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin shop

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/shop --create-home shop
COPY --from=build /src/target/release/shop /usr/local/bin/shop
USER shop
WORKDIR /var/lib/shop
ENV SHOP_BIND_HOST=0.0.0.0 SHOP_DATA_DIR=/var/lib/shop
ENTRYPOINT ["shop"]
