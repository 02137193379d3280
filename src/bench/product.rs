//! `shop bench product`: the catalogue as shoppers query it (filtered, searched, sorted, through
//! nginx, over the seeded catalogue), and reservations of one hot product by many concurrent
//! clients (the order service's side of a sale rush).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::bail;
use clap::Args;
use serde_json::json;
use shop_config::Settings;

use super::{client_from, load, loopback};
use crate::api;

#[derive(Args)]
pub struct ProductBench {
    /// How long each measurement runs, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Concurrent shoppers querying the catalogue.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Concurrent clients reserving the hot product.
    #[arg(long, default_value_t = 64)]
    reservers: usize,
    /// The gateway.
    #[arg(
        long,
        env = "SHOP_GATEWAY_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    gateway: String,
}

pub async fn run(settings: &Settings, args: ProductBench) -> anyhow::Result<()> {
    let gateway = args.gateway.trim_end_matches('/').to_owned();
    let clients = (0..args.concurrency.max(args.reservers))
        .map(|index| client_from(loopback(index)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let client = &clients[0];

    let seeded = |name| api::category(client, &gateway, None, name);
    let (Some(kitchen), Some(books)) = (seeded("Kitchen").await?, seeded("Books").await?) else {
        bail!("the seeded catalogue is missing: run `shop seed` (dev/up does)");
    };
    let queries: Arc<Vec<String>> = Arc::new(
        [
            "q=mug".to_owned(),
            "q=classic%20lamp&in_stock=true".to_owned(),
            format!("category={kitchen}&min_price=1000&max_price=10000&sort=price"),
            "in_stock=true&sort=-price&page=2".to_owned(),
            "q=gift&sort=price&per_page=50".to_owned(),
            format!("category={books}&q=guide&in_stock=true"),
            "min_price=5000&sort=name&per_page=10&page=3".to_owned(),
            "q=eco%20-handmade&sort=newest".to_owned(),
        ]
        .into_iter()
        .map(|query| format!("{gateway}/products?{query}"))
        .collect(),
    );
    println!(
        "shop bench product: {} per measurement, {} shoppers, {} reservers",
        humantime::format_duration(args.duration),
        args.concurrency,
        args.reservers
    );

    let next = Arc::new(AtomicUsize::new(0));
    let catalogue = load(
        "GET /products?… via nginx",
        &clients,
        args.concurrency,
        args.duration,
        move |client| {
            let index = next.fetch_add(1, Ordering::Relaxed) % queries.len();
            client.get(&queries[index])
        },
    )
    .await;
    catalogue.print();

    // The hot product: one product with plenty of stock, so every reservation can succeed and
    // what is measured is the contention on its one stock row.
    let admin = api::admin_token(client, settings).await?;
    let product = api::product_with_plenty_of_stock(
        client,
        &gateway,
        &admin,
        &kitchen,
        "Bench hot product",
        999,
    )
    .await?;
    let service_token = api::service_token(client, &gateway, settings).await?;
    let reservations = format!(
        "{}/internal/reservations",
        settings.product.url.as_str().trim_end_matches('/')
    );
    let reserved = load(
        "POST /internal/reservations (1 hot product)",
        &clients,
        args.reservers,
        args.duration,
        move |client| {
            client
                .post(&reservations)
                .bearer_auth(&service_token)
                .json(&json!({
                    "order_id": uuid::Uuid::new_v4(),
                    "lines": [{ "product_id": product, "quantity": 1 }],
                }))
        },
    )
    .await;
    reserved.print();
    Ok(())
}
