//! `shop bench checkout`: whole purchases through nginx — cart → `POST /orders` (stock reserved,
//! order stored with `OrderPlaced`) → the payment service charges the simulated provider and
//! publishes `PaymentSucceeded` → the order service moves the order to `paid` and publishes
//! `OrderPaid`. Measures checkouts/s, paid orders/s, and the time from `POST /orders` to `OrderPaid`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use futures::StreamExt;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use serde_json::{Value, json};
use shop_bridge::{Ack, Delivery, Subscriber, Subscriptions};
use shop_config::Settings;
use shop_schemas::{Envelope, OrderPaid};
use uuid::Uuid;

use super::work::{Work, WorkSnapshot};
use crate::api;
use crate::load::users;

#[derive(Args)]
pub struct CheckoutBench {
    /// How long shoppers check out, e.g. 20s.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub(crate) duration: Duration,
    /// Concurrent shoppers, each adding one item and checking out, back to back.
    #[arg(long, default_value_t = 16)]
    pub(crate) shoppers: usize,
    /// How many products the shoppers buy from, each checkout a random one: by default as many
    /// as the seeded catalogue has (300), so no one product's stock row is everyone's; 1 is the
    /// one-hot-product case.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u16).range(1..))]
    pub(crate) products: u16,
    /// Shoppers check out this long before anything is measured, so the broker's JIT, the
    /// pools and the caches are warm (Kafka compiles its hot paths in its first minute).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub(crate) warmup: Duration,
    /// Leave out the table of work per paid order (PostgreSQL, Kafka, HTTP, CPU per process).
    #[arg(long)]
    pub(crate) no_work: bool,
    /// The gateway.
    #[arg(
        long,
        env = "SHOP_GATEWAY_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub(crate) gateway: String,
}

type Times = Arc<Mutex<HashMap<Uuid, Instant>>>;

/// Notes when each order's `OrderPaid` arrives.
struct PaidWatcher;

impl Actor for PaidWatcher {
    type Msg = Delivery;
    type State = Times;
    type Arguments = Times;

    async fn pre_start(
        &self,
        _: ActorRef<Delivery>,
        paid: Times,
    ) -> Result<Times, ActorProcessingErr> {
        Ok(paid)
    }

    async fn handle(
        &self,
        _: ActorRef<Delivery>,
        delivery: Delivery,
        paid: &mut Times,
    ) -> Result<(), ActorProcessingErr> {
        if let Envelope::OrderPaid(event) = &delivery.event
            && let Ok(mut paid) = paid.lock()
        {
            paid.entry(event.order_id).or_insert_with(Instant::now);
        }
        let _ = delivery.reply.send(Ack::Done);
        Ok(())
    }
}

#[derive(Default)]
struct Tally {
    placed: Vec<(Uuid, Instant, Duration)>,
    failed: std::collections::BTreeMap<u16, u64>,
}

pub async fn run(settings: &Settings, args: CheckoutBench) -> anyhow::Result<()> {
    let figures = measure(settings, &args).await?;
    figures.print();
    if figures.paid < figures.placed {
        anyhow::bail!("{} orders were never paid", figures.placed - figures.paid);
    }
    Ok(())
}

/// What one checkout run gave.
pub struct CheckoutFigures {
    pub placed: usize,
    pub elapsed: Duration,
    pub failed: std::collections::BTreeMap<u16, u64>,
    /// `POST /orders` p50 and p99, ms.
    pub posting: (f64, f64),
    /// `POST /orders` to `OrderPaid` p50 and p99, ms.
    pub to_paid: (f64, f64),
    pub paid: usize,
    pub paid_per_second: f64,
    /// What the run cost, from the stores' and processes' own counters.
    pub work: Option<Work>,
}

impl CheckoutFigures {
    pub fn print(&self) {
        println!(
            "  checkouts placed (201)      {} in {:.1} s = {:.1}/s; refused or failed: {:?}",
            self.placed,
            self.elapsed.as_secs_f64(),
            self.placed as f64 / self.elapsed.as_secs_f64(),
            self.failed
        );
        println!(
            "  POST /orders                p50 {:.1} ms, p99 {:.1} ms",
            self.posting.0, self.posting.1
        );
        println!(
            "  POST /orders -> OrderPaid   p50 {:.1} ms, p99 {:.1} ms ({} of {} paid)",
            self.to_paid.0, self.to_paid.1, self.paid, self.placed
        );
        println!(
            "  orders paid                 {} = {:.1}/s",
            self.paid, self.paid_per_second
        );
        if let Some(work) = &self.work {
            work.print_per(self.paid, "paid order");
        }
    }
}

pub async fn measure(settings: &Settings, args: &CheckoutBench) -> anyhow::Result<CheckoutFigures> {
    let gateway = args.gateway.trim_end_matches('/').to_owned();
    let client = reqwest::Client::new();
    let admin = api::admin_token(&client, settings).await?;
    let category = api::category(&client, &gateway, Some(&admin), "Benchmarks")
        .await?
        .context("making the Benchmarks category")?;
    let products = bench_products(&client, settings, &admin, &category, args.products).await?;
    let user_url = settings
        .auth
        .user_service_url
        .as_str()
        .trim_end_matches('/');
    let customers = users::customers(
        &client,
        user_url,
        &users::pool_file(&settings.data_dir),
        args.shoppers.max(1),
    )
    .await?;

    let run = Uuid::new_v4().simple().to_string();
    let paid: Times = Arc::default();
    let watcher = format!("bench.paid.{run}");
    Actor::spawn(Some(watcher.clone()), PaidWatcher, paid.clone()).await?;
    let bridge_args = shop_bridge::BridgeArgs {
        service: Box::leak(format!("bench-checkout-{run}").into_boxed_str()),
        settings: settings.kafka.clone(),
        subscriptions: Subscriptions::new().on::<OrderPaid>(Subscriber::deliveries(watcher)),
    };
    Actor::spawn(
        Some(format!("bench.bridge.{run}")),
        shop_bridge::Bridge,
        bridge_args,
    )
    .await?;
    println!(
        "shop bench checkout: {} shoppers for {}, one item of {} each time, paid with pm_card_visa",
        args.shoppers,
        humantime::format_duration(args.duration),
        if products.len() == 1 {
            "one hot product".to_owned()
        } else {
            format!("{} products", products.len())
        },
    );
    // Let the watcher's consumer group settle before timing anything.
    tokio::time::sleep(Duration::from_secs(6)).await;

    let products = Arc::new(products);
    if !args.warmup.is_zero() {
        let warming: Vec<_> = customers
            .iter()
            .map(|customer| {
                let (client, gateway, products) =
                    (client.clone(), gateway.clone(), products.clone());
                let (token, warmup) = (customer.token.clone(), args.warmup);
                tokio::spawn(async move {
                    let until = Instant::now() + warmup;
                    while Instant::now() < until {
                        let product =
                            &products[(Uuid::new_v4().as_u128() % products.len() as u128) as usize];
                        let _ = checkout_once(&client, &gateway, &token, product).await;
                    }
                })
            })
            .collect();
        for shopper in warming {
            shopper.await?;
        }
        // Let the warm-up's orders be paid before the clock starts.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let work_before = if args.no_work {
        None
    } else {
        Some(WorkSnapshot::take(settings, &client).await)
    };
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let shoppers: Vec<_> = customers
        .into_iter()
        .map(|customer| {
            let (client, gateway, product) = (client.clone(), gateway.clone(), products.clone());
            let tally = tally.clone();
            let duration = args.duration;
            tokio::spawn(async move {
                while started.elapsed() < duration {
                    let product =
                        &product[(Uuid::new_v4().as_u128() % product.len() as u128) as usize];
                    let outcome = checkout_once(&client, &gateway, &customer.token, product).await;
                    let Ok(mut tally) = tally.lock() else { return };
                    match outcome {
                        Ok((order_id, at, took)) => tally.placed.push((order_id, at, took)),
                        Err(status) => *tally.failed.entry(status).or_default() += 1,
                    }
                }
            })
        })
        .collect();
    for shopper in shoppers {
        shopper.await?;
    }
    let elapsed = started.elapsed();

    // Wait for the last orders to be paid.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (placed, failed) = {
        let tally = tally
            .lock()
            .map_err(|_| anyhow::anyhow!("a poisoned lock"))?;
        (tally.placed.clone(), tally.failed.clone())
    };
    loop {
        let arrived = {
            let paid = paid
                .lock()
                .map_err(|_| anyhow::anyhow!("a poisoned lock"))?;
            placed
                .iter()
                .filter(|(id, _, _)| paid.contains_key(id))
                .count()
        };
        if arrived >= placed.len() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The work after OrderPaid (mails, the sale of the reservation) belongs to the orders too.
    let work = match work_before {
        Some(before) => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Some(WorkSnapshot::take(settings, &client).await.since(&before))
        }
        None => None,
    };
    let paid = paid
        .lock()
        .map_err(|_| anyhow::anyhow!("a poisoned lock"))?;
    let mut posting: Vec<Duration> = placed.iter().map(|(_, _, took)| *took).collect();
    let mut to_paid: Vec<Duration> = placed
        .iter()
        .filter_map(|(id, at, _)| paid.get(id).map(|when| when.saturating_duration_since(*at)))
        .collect();
    posting.sort();
    to_paid.sort();
    let at = |sorted: &[Duration], p: f64| {
        sorted
            .get(((sorted.len().saturating_sub(1)) as f64 * p).round() as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let last_paid = placed
        .iter()
        .filter_map(|(id, _, _)| paid.get(id))
        .max()
        .map_or(elapsed, |last| last.saturating_duration_since(started));
    Ok(CheckoutFigures {
        placed: placed.len(),
        elapsed,
        failed,
        posting: (at(&posting, 0.5), at(&posting, 0.99)),
        to_paid: (at(&to_paid, 0.5), at(&to_paid, 0.99)),
        paid: to_paid.len(),
        paid_per_second: to_paid.len() as f64 / last_paid.as_secs_f64().max(0.001),
        work,
    })
}

/// One item into the cart and a checkout; the order id, when the checkout started and how long
/// `POST /orders` took — or the status that refused it.
async fn checkout_once(
    client: &reqwest::Client,
    gateway: &str,
    token: &str,
    product: &str,
) -> Result<(Uuid, Instant, Duration), u16> {
    let added = client
        .post(format!("{gateway}/carts/me/items"))
        .bearer_auth(token)
        .json(&json!({ "product_id": product, "quantity": 1 }))
        .send()
        .await
        .map_err(|_| 0_u16)?;
    if !added.status().is_success() {
        return Err(added.status().as_u16());
    }
    let at = Instant::now();
    let response = client
        .post(format!("{gateway}/orders"))
        .bearer_auth(token)
        .header("idempotency-key", Uuid::new_v4().to_string())
        // Shipped standard within Germany, to an address given with the order.
        .json(&json!({
            "payment_method": "pm_card_visa",
            "shipping_method": "standard",
            "address": {
                "name": "Bench Shopper", "line1": "Unter den Linden 1", "city": "Berlin",
                "postal_code": "10117", "country": "DE"
            }
        }))
        .send()
        .await
        .map_err(|_| 0_u16)?;
    let took = at.elapsed();
    if response.status() != reqwest::StatusCode::CREATED {
        return Err(response.status().as_u16());
    }
    let order: Value = response.json().await.map_err(|_| 0_u16)?;
    let order_id: Uuid = order["id"]
        .as_str()
        .and_then(|id| id.parse().ok())
        .ok_or(0_u16)?;
    Ok((order_id, at, took))
}

/// `count` products with stock that never runs out, made once (straight at the product service,
/// not through the gateway's limits) and kept in a file for later runs.
async fn bench_products(
    client: &reqwest::Client,
    settings: &Settings,
    admin: &str,
    category: &str,
    count: u16,
) -> anyhow::Result<Vec<String>> {
    let file = settings.data_dir.join("bench-products.json");
    let product_url = settings
        .product
        .url
        .as_str()
        .trim_end_matches('/')
        .to_owned();
    let mut known: Vec<String> = std::fs::read(&file)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    // A store that was reset since: start the list again.
    if let Some(first) = known.first() {
        let found = client
            .get(format!("{product_url}/products/{first}"))
            .send()
            .await?;
        if !found.status().is_success() {
            known.clear();
        }
    }
    let missing = usize::from(count).saturating_sub(known.len());
    let made: Vec<String> = futures::stream::iter(0..missing)
        .map(|index| {
            api::product_with_plenty_of_stock(
                client,
                &product_url,
                admin,
                category,
                "Checkout bench widget",
                999 + 100 * (index as i64 % 50),
            )
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    if !made.is_empty() {
        known.extend(made);
        std::fs::write(&file, serde_json::to_vec(&known)?)
            .with_context(|| format!("writing {}", file.display()))?;
    }
    known.truncate(usize::from(count));
    Ok(known)
}
