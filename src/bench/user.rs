//! `shop bench user`: logins against raw argon2id, and a cheap authenticated read through nginx
//! against the same read sent straight to the service.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use shop_config::Settings;

use super::{Measured, client_from, load, loopback};

#[derive(Args)]
pub struct UserBench {
    /// How long each measurement runs in each round, e.g. 5s.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub(crate) duration: Duration,
    /// Rounds; each runs every measurement once, in turn, so that what else the machine is
    /// doing falls on all of them alike. The figures are the medians over the rounds.
    #[arg(long, default_value_t = 3)]
    pub(crate) rounds: usize,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    pub(crate) concurrency: usize,
    /// Loopback addresses (127.0.1.N) the clients take turns sending from, so that nginx's
    /// per-client login limit (5/s) never binds: the figure is the service's, not the limit's.
    #[arg(long, default_value_t = 64)]
    pub(crate) addresses: usize,
    /// The gateway.
    #[arg(
        long,
        env = "SHOP_GATEWAY_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub(crate) gateway: String,
}

/// Medians over the rounds, per second.
pub struct UserFigures {
    pub raw_verifications: f64,
    pub logins: f64,
    pub me_gateway: f64,
    pub me_direct: f64,
}

pub async fn run(settings: &Settings, args: UserBench) -> anyhow::Result<()> {
    let rounds = args.rounds.max(1);
    let figures = measure(settings, &args).await?;
    println!();
    println!("medians over {rounds} rounds:");
    println!(
        "  raw argon2id verifications   {:>9.1}/s",
        figures.raw_verifications
    );
    println!("  logins via nginx             {:>9.1}/s", figures.logins);
    println!(
        "  GET /users/me via nginx      {:>9.1}/s",
        figures.me_gateway
    );
    println!(
        "  GET /users/me direct         {:>9.1}/s",
        figures.me_direct
    );
    println!(
        "  logins via nginx / raw argon2id verifications: {:.2}x (target >= 0.8x)",
        figures.logins / figures.raw_verifications
    );
    println!(
        "  /users/me via nginx / direct:                  {:.2}x (target >= 0.8x)",
        figures.me_gateway / figures.me_direct
    );
    Ok(())
}

pub async fn measure(settings: &Settings, args: &UserBench) -> anyhow::Result<UserFigures> {
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
    Ok(UserFigures {
        raw_verifications: median(0),
        logins: median(1),
        me_gateway: median(2),
        me_direct: median(3),
    })
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
