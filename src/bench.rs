//! `shop bench`: throughput figures taken against a running system (dev/up), each beside the
//! baseline it should be compared with, measured in the same run on the same machine.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use shop_config::Settings;

#[derive(Subcommand)]
pub enum BenchCommand {
    /// Logins/s through nginx against raw argon2id verifications/s, and GET /users/me through
    /// nginx against the same requests sent straight to the user service.
    User(UserBench),
}

#[derive(Args)]
pub struct UserBench {
    /// How long each measurement runs in each round, e.g. 5s.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Rounds; each runs every measurement once, in turn, so that what else the machine is
    /// doing falls on all of them alike. The figures are the medians over the rounds.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Loopback addresses (127.0.1.N) the clients take turns sending from, so that nginx's
    /// per-client login limit (5/s) never binds: the figure is the service's, not the limit's.
    #[arg(long, default_value_t = 64)]
    addresses: usize,
    /// The gateway.
    #[arg(
        long,
        env = "SHOP_GATEWAY_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    gateway: String,
}

pub async fn run(settings: &Settings, command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::User(args) => user(settings, args).await,
    }
}

struct Measured {
    label: &'static str,
    ok: u64,
    refused: u64,
    failed: u64,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Measured {
    fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let index = ((sorted.len() - 1) as f64 * p).round() as usize;
        sorted[index]
    }

    fn print(&self) {
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

async fn user(settings: &Settings, args: UserBench) -> anyhow::Result<()> {
    let direct = settings
        .auth
        .user_service_url
        .as_str()
        .trim_end_matches('/')
        .to_owned();
    let gateway = args.gateway.trim_end_matches('/').to_owned();
    let clients = (0..args.addresses.max(args.concurrency))
        .map(|index| client_from(loopback(index)))
        .collect::<anyhow::Result<Vec<_>>>()?;

    let email = format!("bench-{}@shop.test", uuid::Uuid::new_v4().simple());
    let password = "bench-password-1234";
    let registered = clients[0]
        .post(format!("{direct}/users/register"))
        .json(&serde_json::json!({ "email": email, "password": password, "name": "Bench" }))
        .send()
        .await
        .context("registering the bench user (is dev/up running?)")?;
    if !registered.status().is_success() {
        bail!("registering the bench user: {}", registered.status());
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "shop bench user: {} rounds of {} per measurement, {} clients from {} addresses, {cores} cores",
        args.rounds,
        humantime::format_duration(args.duration),
        args.concurrency,
        clients.len()
    );

    let hash = shop_user::hash_now(password)?;
    let login_body = serde_json::json!({ "email": email, "password": password });
    let token = login_token(&clients[0], &direct, &login_body).await?;
    let (login_url, me_gateway_url, me_direct_url) = (
        format!("{gateway}/users/login"),
        format!("{gateway}/users/me"),
        format!("{direct}/users/me"),
    );

    let mut rounds: Vec<[Measured; 4]> = Vec::new();
    for round in 1..=args.rounds.max(1) {
        println!("round {round}");
        let raw = raw_verifications(&hash, password, cores, args.duration).await;
        raw.print();
        let (url, body) = (login_url.clone(), login_body.clone());
        let logins = load(
            "POST /users/login via nginx",
            &clients,
            args.concurrency,
            args.duration,
            move |client| client.post(&url).json(&body),
        )
        .await;
        logins.print();
        let (url, bearer) = (me_gateway_url.clone(), token.clone());
        let me_gateway = load(
            "GET /users/me via nginx",
            &clients,
            args.concurrency,
            args.duration,
            move |client| client.get(&url).bearer_auth(&bearer),
        )
        .await;
        me_gateway.print();
        let (url, bearer) = (me_direct_url.clone(), token.clone());
        let me_direct = load(
            "GET /users/me direct",
            &clients,
            args.concurrency,
            args.duration,
            move |client| client.get(&url).bearer_auth(&bearer),
        )
        .await;
        me_direct.print();
        rounds.push([raw, logins, me_gateway, me_direct]);
    }

    let median = |index: usize| {
        let mut rates: Vec<f64> = rounds.iter().map(|round| round[index].rate()).collect();
        rates.sort_by(f64::total_cmp);
        rates[rates.len() / 2]
    };
    let (raw, logins, me_gateway, me_direct) = (median(0), median(1), median(2), median(3));
    println!();
    println!("medians over {} rounds:", rounds.len());
    println!("  raw argon2id verifications   {raw:>9.1}/s");
    println!("  logins via nginx             {logins:>9.1}/s");
    println!("  GET /users/me via nginx      {me_gateway:>9.1}/s");
    println!("  GET /users/me direct         {me_direct:>9.1}/s");
    println!(
        "  logins via nginx / raw argon2id verifications: {:.2}x (target >= 0.8x)",
        logins / raw
    );
    println!(
        "  /users/me via nginx / direct:                  {:.2}x (target >= 0.8x)",
        me_gateway / me_direct
    );
    Ok(())
}

/// The ceiling for logins: argon2id verifications with the service's parameters on every core.
async fn raw_verifications(
    hash: &str,
    password: &str,
    cores: usize,
    duration: Duration,
) -> Measured {
    let started = Instant::now();
    let handles: Vec<_> = (0..cores)
        .map(|_| {
            let (hash, password) = (hash.to_owned(), password.to_owned());
            tokio::task::spawn_blocking(move || {
                // Memory kept from hash to hash, as each worker of the service's pool does.
                let mut hasher = shop_user::Hasher::new();
                let mut latencies = Vec::new();
                while started.elapsed() < duration {
                    let one = Instant::now();
                    if hasher.verify(&password, &hash) {
                        latencies.push(one.elapsed());
                    }
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for handle in handles {
        latencies.extend(handle.await.unwrap_or_default());
    }
    Measured {
        label: "raw argon2id verify (all cores)",
        ok: latencies.len() as u64,
        refused: 0,
        failed: 0,
        elapsed: started.elapsed(),
        latencies,
    }
}

/// `concurrency` tasks send requests back to back for `duration`, each taking turns over its
/// share of `clients`.
async fn load(
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

async fn login_token(
    client: &reqwest::Client,
    direct: &str,
    body: &serde_json::Value,
) -> anyhow::Result<String> {
    let response: serde_json::Value = client
        .post(format!("{direct}/users/login"))
        .json(body)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    response["access_token"]
        .as_str()
        .map(str::to_owned)
        .context("no access_token in the login answer")
}

fn loopback(index: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 1, (index % 250) as u8 + 1))
}

fn client_from(address: IpAddr) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .local_address(address)
        .pool_max_idle_per_host(4)
        .build()?)
}
