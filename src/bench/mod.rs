//! `shop bench`: throughput figures taken against a running system (dev/up), each beside the
//! baseline it should be compared with, measured in the same run on the same machine.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Subcommand;
use shop_config::Settings;

mod checkout;
mod events;
mod notifications;
mod product;
mod suite;
mod user;
mod work;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Every measurement below in one go (what `shop bench` alone runs), each beside its
    /// baseline from the same run, as one markdown table.
    All(suite::Suite),
    /// Logins/s through nginx against raw argon2id verifications/s, and GET /users/me through
    /// nginx against the same requests sent straight to the user service.
    User(user::UserBench),
    /// Filtered and searched GET /products through nginx over the seeded catalogue, and
    /// reservations/s of one hot product by many concurrent clients.
    Product(product::ProductBench),
    /// Events through outbox -> Kafka -> bridge -> actor, and commit-to-delivery latency.
    Events(events::EventsBench),
    /// Whole purchases through nginx, paid by the payment service's simulated provider: paid
    /// orders/s and the time from POST /orders to OrderPaid.
    Checkout(checkout::CheckoutBench),
    /// Welcome mails through the notification service and SMTP: mails/s and event-to-sent time.
    Notifications(notifications::NotificationsBench),
}

pub use suite::Suite;

pub async fn run(settings: &Settings, command: Option<BenchCommand>) -> anyhow::Result<()> {
    let Some(command) = command else {
        return suite::run(settings, Suite::default()).await;
    };
    match command {
        BenchCommand::All(suite) => suite::run(settings, suite).await,
        BenchCommand::User(args) => user::run(settings, args).await,
        BenchCommand::Product(args) => product::run(settings, args).await,
        BenchCommand::Events(args) => events::run(settings, args).await,
        BenchCommand::Checkout(args) => checkout::run(settings, args).await,
        BenchCommand::Notifications(args) => notifications::run(settings, args).await,
    }
}

pub struct Measured {
    pub label: &'static str,
    pub ok: u64,
    pub refused: u64,
    pub failed: u64,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
}

impl Measured {
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let index = ((sorted.len() - 1) as f64 * p).round() as usize;
        sorted[index]
    }

    pub fn print(&self) {
        println!(
            "  {:<34} {:>9.1}/s   p50 {:>7.2} ms   p99 {:>7.2} ms   ok {:>6}   429 {:>4}   errors {:>4}",
            self.label,
            self.rate(),
            self.percentile(0.5).as_secs_f64() * 1000.0,
            self.percentile(0.99).as_secs_f64() * 1000.0,
            self.ok,
            self.refused,
            self.failed
        );
    }
}

/// `concurrency` tasks send requests back to back for `duration`, each taking turns over its
/// share of `clients`.
pub async fn load(
    label: &'static str,
    clients: &[reqwest::Client],
    concurrency: usize,
    duration: Duration,
    request: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync + 'static + Clone,
) -> Measured {
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, refused, failed) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency.max(1))
        .map(|task| {
            let mine: Vec<reqwest::Client> = clients
                .iter()
                .skip(task)
                .step_by(concurrency.max(1))
                .cloned()
                .collect();
            let (stop, ok, refused, failed) =
                (stop.clone(), ok.clone(), refused.clone(), failed.clone());
            let request = request.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                for client in mine.iter().cycle() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let one = Instant::now();
                    match request(client).send().await {
                        Ok(response) if response.status().is_success() => {
                            let _ = response.bytes().await;
                            latencies.push(one.elapsed());
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(response) if response.status().as_u16() == 429 => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                latencies
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap_or_default());
    }
    Measured {
        label,
        ok: ok.load(Ordering::Relaxed),
        refused: refused.load(Ordering::Relaxed),
        failed: failed.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        latencies,
    }
}

pub fn loopback(index: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 1, (index % 250) as u8 + 1))
}

pub fn client_from(address: IpAddr) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .local_address(address)
        .pool_max_idle_per_host(4)
        .build()?)
}
