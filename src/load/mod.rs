//! `shop load cart`: many clients adding to carts at once, through the gateway, then a check that
//! no acknowledged add was lost — and, beside it, what the store itself manages (`--raw-store`).

mod raw;
pub(crate) mod users;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::{Value, json};
use shop_config::Settings;

use crate::api::{self, admin_token};
use crate::bench::{client_from, loopback};

#[derive(Subcommand)]
pub enum LoadCommand {
    /// Concurrent adds to carts: one hot cart (`--hot`) or many users' carts.
    Cart(CartLoad),
    /// The memory of many idle cart actors, and whether passivation gives it back.
    IdleCarts(IdleCarts),
}

#[derive(Args, Clone)]
pub struct IdleCarts {
    /// Cart actors to start (one per made-up user; reading a cart starts its actor).
    #[arg(long, default_value_t = 100_000)]
    count: usize,
    /// Requests at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// How long to wait for the carts to hibernate (SHOP_CART_HIBERNATE of the cart service, plus).
    /// Their records are forgotten only after SHOP_CART_IDLE.
    #[arg(long, default_value = "2m", value_parser = humantime::parse_duration)]
    wait: Duration,
}

#[derive(Args, Clone)]
pub struct CartLoad {
    /// Every client adds to ONE cart (a sale rush on one basket).
    #[arg(long)]
    pub(crate) hot: bool,
    /// Customers whose carts are shared out among the clients (ignored with --hot).
    #[arg(long, default_value_t = 1000)]
    pub(crate) users: usize,
    /// Clients sending at once.
    #[arg(long, default_value_t = 64)]
    pub(crate) concurrency: usize,
    /// How long to send (default 10s, unless --requests is given).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) duration: Option<Duration>,
    /// How many adds to send in all (instead of --duration).
    #[arg(long)]
    pub(crate) requests: Option<u64>,
    /// Where to send them.
    #[arg(
        long,
        env = "SHOP_GATEWAY_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub(crate) url: String,
    /// Also measure the store's own rate for what carts do (insert a new version of a cart,
    /// one per request) at the same concurrency.
    #[arg(long)]
    pub(crate) raw_store: bool,
    /// Also measure the HTTP ceiling: `GET /users/me` through the same gateway, by the same
    /// clients, right after the load.
    #[arg(long)]
    pub(crate) http_ceiling: bool,
    /// Write the results as JSON to this file too.
    #[arg(long)]
    pub(crate) json: Option<std::path::PathBuf>,
}

/// Products the load tester adds, each with stock enough never to run out.
const PRODUCTS: usize = 50;
/// The most one cart line holds.
const LINE_CAP: u64 = 99;

pub async fn run(settings: &Settings, command: LoadCommand) -> anyhow::Result<()> {
    match command {
        LoadCommand::Cart(args) => cart(settings, args).await,
        LoadCommand::IdleCarts(args) => idle_carts(settings, args).await,
    }
}

#[derive(Serialize)]
pub(crate) struct Report {
    scenario: &'static str,
    users: usize,
    concurrency: usize,
    seconds: f64,
    requests: u64,
    acknowledged: u64,
    requests_per_second: f64,
    pub acknowledged_per_second: f64,
    pub latency_ms: Latency,
    errors_by_status: BTreeMap<String, u64>,
    pub lost_updates: Vec<Difference>,
    pub raw_store_inserts_per_second: Option<f64>,
    pub ratio_to_raw_store: Option<f64>,
    pub http_ceiling_per_second: Option<f64>,
    pub ratio_to_http_ceiling: Option<f64>,
}

#[derive(Serialize, Default)]
pub(crate) struct Latency {
    pub p50: f64,
    p90: f64,
    pub p99: f64,
    max: f64,
}

#[derive(Serialize)]
pub(crate) struct Difference {
    user: String,
    product: String,
    acknowledged: u64,
    in_cart: u64,
}

async fn cart(settings: &Settings, args: CartLoad) -> anyhow::Result<()> {
    let report = measure_cart(settings, &args).await?;
    print_report(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if !report.lost_updates.is_empty() {
        bail!(
            "{} cart lines differ from the acknowledged adds",
            report.lost_updates.len()
        );
    }
    Ok(())
}

/// Runs one cart load and checks the carts afterwards; the caller reports.
pub(crate) async fn measure_cart(settings: &Settings, args: &CartLoad) -> anyhow::Result<Report> {
    let gateway = args.url.trim_end_matches('/').to_owned();
    let user_url = settings
        .auth
        .user_service_url
        .as_str()
        .trim_end_matches('/')
        .to_owned();
    let clients = (0..args.concurrency.max(1))
        .map(|index| client_from(loopback(index)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let setup = &clients[0];

    let products = load_products(setup, &gateway, &admin_token(setup, settings).await?).await?;
    let users = if args.hot { 1 } else { args.users.max(1) };
    let customers = users::customers(
        setup,
        &user_url,
        &users::pool_file(&settings.data_dir),
        users,
    )
    .await?;
    // Setup and the final check go straight to the cart service: they are not what is measured,
    // and through the gateway they would count against its per-client rate limit.
    let cart_url = settings.cart.url.as_str().trim_end_matches('/').to_owned();
    empty_carts(setup, &cart_url, &customers).await?;

    // A hot cart holds at most 50 lines of 99: that bounds a hot run.
    let cap = if args.hot {
        Some(PRODUCTS as u64 * LINE_CAP)
    } else {
        None
    };
    let budget = match (args.requests, cap) {
        (Some(requests), Some(cap)) => Some(requests.min(cap)),
        (Some(requests), None) => Some(requests),
        (None, Some(cap)) if args.duration.is_none() => Some(cap.min(64 * 50)),
        (None, cap) => cap,
    };
    let duration = match (args.duration, args.requests) {
        (Some(duration), _) => Some(duration),
        (None, Some(_)) => None,
        (None, None) if args.hot => None,
        (None, None) => Some(Duration::from_secs(10)),
    };
    let scenario = if args.hot { "hot cart" } else { "many carts" };
    println!(
        "shop load cart: {scenario}, {} customers, {} clients, {}",
        customers.len(),
        clients.len(),
        match (duration, budget) {
            (Some(duration), _) => humantime::format_duration(duration).to_string(),
            (None, Some(budget)) => format!("{budget} adds"),
            (None, None) => "until stopped".to_owned(),
        }
    );

    // A timed hot run is rounds of one full cart each: every round is checked for lost updates,
    // then the cart is emptied (neither counted in the time) and the next one starts, so the
    // cart's cap does not cut the measurement short.
    let rounds = args.hot && args.requests.is_none() && duration.is_some();
    let mut outcome = Outcome::default();
    let mut lost = Vec::new();
    loop {
        let left = duration.map(|duration| duration.saturating_sub(outcome.elapsed));
        let round = send_adds(&clients, &gateway, &customers, &products, left, budget).await;
        lost.extend(verify(setup, &cart_url, &customers, &products, &round.acknowledged).await?);
        outcome.absorb(round);
        if !rounds || duration.is_none_or(|duration| outcome.elapsed >= duration) {
            break;
        }
        empty_carts(setup, &cart_url, &customers).await?;
    }

    let baseline_for = Duration::from_secs_f64(outcome.elapsed.as_secs_f64().max(3.0));
    let ceiling = if args.http_ceiling {
        let (url, token) = (format!("{gateway}/users/me"), customers[0].token.clone());
        let measured = crate::bench::load(
            "GET /users/me via nginx",
            &clients,
            clients.len(),
            baseline_for,
            move |client| client.get(&url).bearer_auth(&token),
        )
        .await;
        Some(measured.rate())
    } else {
        None
    };
    let raw_rate = if args.raw_store {
        let url = settings.cart.mongodb_url.as_str();
        Some(raw::inserts_per_second(url, args.concurrency, baseline_for).await?)
    } else {
        None
    };

    let seconds = outcome.elapsed.as_secs_f64();
    let acknowledged: u64 = outcome.acknowledged.values().sum();
    let mut latencies = outcome.latencies;
    latencies.sort_unstable();
    let at = |p: f64| -> f64 {
        latencies
            .get(((latencies.len().saturating_sub(1)) as f64 * p).round() as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let report = Report {
        scenario,
        users: customers.len(),
        concurrency: clients.len(),
        seconds,
        requests: outcome.sent,
        acknowledged,
        requests_per_second: outcome.sent as f64 / seconds,
        acknowledged_per_second: acknowledged as f64 / seconds,
        latency_ms: Latency {
            p50: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
            max: at(1.0),
        },
        errors_by_status: outcome.errors,
        lost_updates: lost,
        ratio_to_raw_store: raw_rate.map(|raw| acknowledged as f64 / seconds / raw),
        raw_store_inserts_per_second: raw_rate,
        ratio_to_http_ceiling: ceiling.map(|ceiling| acknowledged as f64 / seconds / ceiling),
        http_ceiling_per_second: ceiling,
    };
    Ok(report)
}

/// The load tester's own products, in a category of their own, made once.
async fn load_products(
    client: &reqwest::Client,
    gateway: &str,
    admin: &str,
) -> anyhow::Result<Vec<String>> {
    let category = api::category(client, gateway, Some(admin), "Load test")
        .await?
        .context("the load test category")?;
    let mut products = api::products_in(client, gateway, &category).await?;
    while products.len() < PRODUCTS {
        let name = format!("Load test product {}", products.len() + 1);
        let price = 100 + products.len() as i64;
        products.push(
            api::product_with_plenty_of_stock(client, gateway, admin, &category, &name, price)
                .await?,
        );
    }
    products.truncate(PRODUCTS);
    Ok(products)
}

/// Every customer starts from an empty cart, so what is in it at the end is what was added.
async fn empty_carts(
    client: &reqwest::Client,
    gateway: &str,
    customers: &[users::Customer],
) -> anyhow::Result<()> {
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(customers)
        .map(|customer| async move {
            let status = client
                .delete(format!("{gateway}/carts/me"))
                .bearer_auth(&customer.token)
                .send()
                .await?
                .status();
            // 404: the customer has no cart yet, which is as empty as it gets.
            if status.is_success() || status.as_u16() == 404 {
                Ok(())
            } else {
                bail!("emptying a cart: {status}")
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    results.into_iter().collect()
}

#[derive(Default)]
struct Outcome {
    sent: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
    errors: BTreeMap<String, u64>,
    /// Acknowledged adds per (customer index, product index).
    acknowledged: HashMap<(usize, usize), u64>,
}

impl Outcome {
    /// Adds a later round's figures to these.
    fn absorb(&mut self, round: Outcome) {
        self.sent += round.sent;
        self.elapsed += round.elapsed;
        self.latencies.extend(round.latencies);
        for (status, count) in round.errors {
            *self.errors.entry(status).or_default() += count;
        }
        for (key, count) in round.acknowledged {
            *self.acknowledged.entry(key).or_default() += count;
        }
    }
}

async fn send_adds(
    clients: &[reqwest::Client],
    gateway: &str,
    customers: &[users::Customer],
    products: &[String],
    duration: Option<Duration>,
    budget: Option<u64>,
) -> Outcome {
    let issued = Arc::new(AtomicU64::new(0));
    let bar = match budget {
        Some(budget) if duration.is_none() => ProgressBar::new(budget),
        _ => ProgressBar::new(duration.map_or(0, |d| d.as_millis() as u64)),
    };
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{bar:40}] {elapsed_precise} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let started = Instant::now();
    let deadline = duration.map(|duration| started + duration);
    let url = format!("{gateway}/carts/me/items");
    let tasks: Vec<_> = clients
        .iter()
        .cloned()
        .enumerate()
        .map(|(worker, client)| {
            let (issued, url) = (issued.clone(), url.clone());
            let customers: Vec<(String, String)> = customers
                .iter()
                .map(|customer| (customer.id.clone(), customer.token.clone()))
                .collect();
            let products = products.to_vec();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors: BTreeMap<String, u64> = BTreeMap::new();
                let mut acknowledged: HashMap<(usize, usize), u64> = HashMap::new();
                let mut seed = worker as u64 * 7919 + 1;
                loop {
                    if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                        break;
                    }
                    let n = issued.fetch_add(1, Ordering::Relaxed);
                    if budget.is_some_and(|budget| n >= budget) {
                        break;
                    }
                    // Hot: products in turn, so every line grows evenly up to its cap. Many
                    // carts: a customer and a product at random.
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    let user = if customers.len() == 1 {
                        0
                    } else {
                        (seed % customers.len() as u64) as usize
                    };
                    let product = if customers.len() == 1 {
                        (n % products.len() as u64) as usize
                    } else {
                        ((seed >> 20) % products.len() as u64) as usize
                    };
                    let one = Instant::now();
                    let response = client
                        .post(&url)
                        .bearer_auth(&customers[user].1)
                        .json(&json!({ "product_id": products[product], "quantity": 1 }))
                        .send()
                        .await;
                    latencies.push(one.elapsed());
                    match response {
                        Ok(response) if response.status().is_success() => {
                            let _ = response.bytes().await;
                            *acknowledged.entry((user, product)).or_default() += 1;
                        }
                        Ok(response) => {
                            *errors
                                .entry(response.status().as_u16().to_string())
                                .or_default() += 1;
                        }
                        Err(_) => *errors.entry("no answer".to_owned()).or_default() += 1,
                    }
                }
                (latencies, errors, acknowledged)
            })
        })
        .collect();
    let ticker = {
        let (bar, issued) = (bar.clone(), issued.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let sent = issued.load(Ordering::Relaxed);
                let elapsed = started.elapsed();
                let rate = sent as f64 / elapsed.as_secs_f64().max(0.001);
                // The bar runs over the time of a timed run, over the adds of a counted one.
                bar.set_position(if duration.is_some() {
                    elapsed.as_millis() as u64
                } else {
                    sent
                });
                bar.set_message(format!("{sent} adds, {rate:.0}/s"));
            }
        })
    };
    let mut outcome = Outcome::default();
    for task in tasks {
        if let Ok((latencies, errors, acknowledged)) = task.await {
            outcome.absorb(Outcome {
                sent: latencies.len() as u64,
                elapsed: Duration::ZERO,
                latencies,
                errors,
                acknowledged,
            });
        }
    }
    outcome.elapsed = started.elapsed();
    ticker.abort();
    bar.finish_and_clear();
    outcome
}

/// Reads every cart back and compares each line with the adds that were acknowledged.
async fn verify(
    client: &reqwest::Client,
    gateway: &str,
    customers: &[users::Customer],
    products: &[String],
    acknowledged: &HashMap<(usize, usize), u64>,
) -> anyhow::Result<Vec<Difference>> {
    let carts: Vec<anyhow::Result<(usize, HashMap<String, u64>)>> =
        futures::stream::iter(customers.iter().enumerate())
            .map(|(index, customer)| async move {
                let response = client
                    .get(format!("{gateway}/carts/me"))
                    .bearer_auth(&customer.token)
                    .send()
                    .await?;
                if response.status().as_u16() == 404 {
                    return Ok((index, HashMap::new()));
                }
                let cart: Value = response.error_for_status()?.json().await?;
                let lines = cart["items"]
                    .as_array()
                    .map(|items| {
                        items
                            .iter()
                            .filter_map(|item| {
                                Some((
                                    item["product_id"].as_str()?.to_owned(),
                                    item["quantity"].as_u64()?,
                                ))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Ok((index, lines))
            })
            .buffer_unordered(32)
            .collect()
            .await;
    let mut differences = Vec::new();
    for cart in carts {
        let (user, lines) = cart?;
        for (product_index, product) in products.iter().enumerate() {
            let expected = acknowledged
                .get(&(user, product_index))
                .copied()
                .unwrap_or(0);
            let found = lines.get(product).copied().unwrap_or(0);
            if expected != found {
                differences.push(Difference {
                    user: customers[user].id.clone(),
                    product: product.clone(),
                    acknowledged: expected,
                    in_cart: found,
                });
            }
        }
    }
    Ok(differences)
}

fn print_report(report: &Report) {
    println!();
    println!("  {:<34} {}", "scenario", report.scenario);
    println!(
        "  {:<34} {} customers, {} clients",
        "load", report.users, report.concurrency
    );
    println!(
        "  {:<34} {} in {:.1} s",
        "adds sent", report.requests, report.seconds
    );
    println!("  {:<34} {:.0}/s", "requests", report.requests_per_second);
    println!(
        "  {:<34} {:.0}/s ({} acknowledged)",
        "acknowledged adds (cart writes)", report.acknowledged_per_second, report.acknowledged
    );
    println!(
        "  {:<34} p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        "latency",
        report.latency_ms.p50,
        report.latency_ms.p90,
        report.latency_ms.p99,
        report.latency_ms.max
    );
    if report.errors_by_status.is_empty() {
        println!("  {:<34} none", "errors");
    } else {
        for (status, count) in &report.errors_by_status {
            println!("  {:<34} {count}", format!("errors: {status}"));
        }
    }
    if let (Some(raw), Some(ratio)) = (
        report.raw_store_inserts_per_second,
        report.ratio_to_raw_store,
    ) {
        println!("  {:<34} {raw:.0}/s", "raw store inserts (same clients)");
        println!("  {:<34} {ratio:.2}x", "cart writes / raw store inserts");
    }
    if let (Some(ceiling), Some(ratio)) =
        (report.http_ceiling_per_second, report.ratio_to_http_ceiling)
    {
        println!(
            "  {:<34} {ceiling:.0}/s",
            "GET /users/me via nginx (same clients)"
        );
        println!("  {:<34} {ratio:.2}x", "cart writes / that HTTP ceiling");
    }
    if report.lost_updates.is_empty() {
        println!(
            "  {:<34} none: every acknowledged add is in its cart",
            "lost updates"
        );
    } else {
        println!("  lost updates: {} lines differ", report.lost_updates.len());
        for difference in report.lost_updates.iter().take(20) {
            println!(
                "    user {} product {}: {} acknowledged, {} in the cart",
                difference.user, difference.product, difference.acknowledged, difference.in_cart
            );
        }
    }
}

/// The cart service once `count` carts hibernated: its resident memory then.
pub(crate) struct Hibernated {
    pub rss: f64,
}

/// Waits until the cart service holds at least `count` hibernated carts and no awake ones (its
/// SHOP_CART_HIBERNATE, plus a sweep), and gives its resident memory then.
pub(crate) async fn hibernated_carts(
    settings: &Settings,
    count: usize,
) -> anyhow::Result<Hibernated> {
    let cart_url = settings.cart.url.as_str().trim_end_matches('/').to_owned();
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let hibernated = api::metric(&client, &cart_url, "shop_cart_hibernated").await?;
        let (awake, rss) = cart_figures(&client, &cart_url).await?;
        if hibernated >= count as f64 && awake == 0.0 {
            // The sweep after the one that hibernated the last carts gives the freed memory
            // back (a sweep runs every quarter of SHOP_CART_HIBERNATE: 7.5 s by default).
            tokio::time::sleep(Duration::from_secs(10)).await;
            let (_, rss) = cart_figures(&client, &cart_url).await?;
            return Ok(Hibernated { rss });
        }
        if Instant::now() > deadline {
            bail!(
                "after 10 minutes {hibernated} carts hibernated and {awake} awake ({:.0} MiB): is SHOP_CART_HIBERNATE shorter than SHOP_CART_IDLE?",
                rss / 1048576.0
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// `shop_cart_actors` and `process_resident_memory_bytes` of the cart service.
async fn cart_figures(client: &reqwest::Client, cart_url: &str) -> anyhow::Result<(f64, f64)> {
    Ok((
        api::metric(client, cart_url, "shop_cart_actors").await?,
        api::metric(client, cart_url, "process_resident_memory_bytes").await?,
    ))
}

async fn idle_carts(settings: &Settings, args: IdleCarts) -> anyhow::Result<()> {
    let cart_url = settings.cart.url.as_str().trim_end_matches('/').to_owned();
    let client = reqwest::Client::new();
    let mib = |bytes: f64| bytes / (1024.0 * 1024.0);
    println!("shop load idle-carts: {} cart actors", args.count);
    let idle = start_idle_carts(settings, args.count, args.concurrency).await?;
    let (actors_before, actors_full, rss_full) = (idle.actors_before, idle.actors, idle.rss);
    println!(
        "  the cart service held {:.0} MiB with {actors_before} running; started {} in {:.1} s ({} failed); {actors_full} running, {:.0} MiB: {:.0} bytes per idle cart actor",
        mib(idle.rss_before),
        args.count,
        idle.took.as_secs_f64(),
        idle.failures,
        mib(rss_full),
        idle.bytes_per_actor()
    );

    let deadline = Instant::now() + args.wait;
    let (mut actors, mut rss) = (actors_full, rss_full);
    while actors > actors_before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(2)).await;
        (actors, rss) = cart_figures(&client, &cart_url).await?;
    }
    let hibernated = api::metric(&client, &cart_url, "shop_cart_hibernated").await?;
    println!(
        "  once idle: {actors} awake, {hibernated} hibernated, {:.0} MiB ({:.0} MiB given back)",
        mib(rss),
        mib(rss_full - rss)
    );
    if actors > actors_before {
        bail!(
            "the carts did not hibernate within {}",
            humantime::format_duration(args.wait)
        );
    }
    Ok(())
}

/// The cart service before and after `count` idle cart actors were started.
pub(crate) struct IdleCartMemory {
    pub actors_before: f64,
    pub rss_before: f64,
    pub actors: f64,
    pub rss: f64,
    pub failures: usize,
    pub took: Duration,
}

impl IdleCartMemory {
    pub fn bytes_per_actor(&self) -> f64 {
        (self.rss - self.rss_before) / (self.actors - self.actors_before).max(1.0)
    }
}

/// Starts `count` cart actors by reading carts nobody has (each actor stays, idle, until it
/// passivates) and measures the cart service's memory around it.
pub(crate) async fn start_idle_carts(
    settings: &Settings,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<IdleCartMemory> {
    let cart_url = settings.cart.url.as_str().trim_end_matches('/').to_owned();
    let client = reqwest::Client::new();
    let admin = admin_token(&client, settings).await?;
    let (actors_before, rss_before) = cart_figures(&client, &cart_url).await?;
    let bar = ProgressBar::new(count as u64);
    bar.set_style(
        ProgressStyle::with_template("starting cart actors [{bar:40}] {pos}/{len} ({per_sec})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let started = Instant::now();
    let failures: usize = futures::stream::iter(0..count)
        .map(|_| {
            let (client, admin, cart_url, bar) =
                (client.clone(), admin.clone(), cart_url.clone(), bar.clone());
            async move {
                // No such cart: the actor starts, finds nothing stored, answers 404, stays.
                let status = client
                    .get(format!("{cart_url}/carts/{}", uuid::Uuid::new_v4()))
                    .bearer_auth(&admin)
                    .send()
                    .await
                    .map(|response| response.status().as_u16());
                bar.inc(1);
                usize::from(!matches!(status, Ok(404)))
            }
        })
        .buffer_unordered(concurrency.max(1))
        .fold(0, |sum, failed| async move { sum + failed })
        .await;
    bar.finish_and_clear();
    let took = started.elapsed();
    let (actors, rss) = cart_figures(&client, &cart_url).await?;
    Ok(IdleCartMemory {
        actors_before,
        rss_before,
        actors,
        rss,
        failures,
        took,
    })
}
