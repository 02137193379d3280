//! `shop bench` with no subcommand: the measurements of the earlier issues in one go, each beside
//! the baseline it is judged against, measured in the same run on the same machine, and printed
//! as one markdown table on stdout.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use shop_config::Settings;

use super::checkout::{self, CheckoutBench};
use super::user::{self, UserBench};
use super::{client_from, load, loopback};
use crate::load::{self as cart_load, CartLoad};

#[derive(Args)]
pub struct Suite {
    /// How long each timed measurement runs.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Customers whose carts the many-carts load spreads over (made once, then reused).
    #[arg(long, default_value_t = 10_000)]
    users: usize,
    /// Idle carts whose memory is measured once they hibernated.
    #[arg(long, default_value_t = 100_000)]
    idle_carts: usize,
    /// Awake cart actors whose memory is measured.
    #[arg(long, default_value_t = 10_000)]
    awake_carts: usize,
    /// The gateway.
    #[arg(
        long,
        env = "SHOP_GATEWAY_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    gateway: String,
}

impl Default for Suite {
    fn default() -> Self {
        Self {
            duration: Duration::from_secs(10),
            users: 10_000,
            idle_carts: 100_000,
            awake_carts: 10_000,
            gateway: std::env::var("SHOP_GATEWAY_URL")
                .unwrap_or_else(|_| "http://127.0.0.1:8080".to_owned()),
        }
    }
}

/// One line of the table.
struct Row {
    what: String,
    figure: String,
    baseline: String,
    /// figure / baseline
    ratio: f64,
    goal: &'static str,
    met: Option<bool>,
}

pub async fn run(settings: &Settings, suite: Suite) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    let carts = |hot: bool, users: usize, concurrency: usize, duration: Duration| CartLoad {
        hot,
        users,
        concurrency,
        duration: Some(duration),
        requests: None,
        url: suite.gateway.clone(),
        raw_store: true,
        http_ceiling: true,
        json: None,
    };

    eprintln!(
        "[bench] hot cart: 64 clients on one cart, then GET /users/me and the store's inserts"
    );
    let hot = cart_load::measure_cart(settings, &carts(true, 1, 64, suite.duration)).await?;
    rows.push(cart_row(
        "Hot cart: adds/s, 64 clients on one cart",
        &hot,
        0.9,
    ));

    eprintln!("[bench] many carts: {} customers, 64 clients", suite.users);
    let many =
        cart_load::measure_cart(settings, &carts(false, suite.users, 64, suite.duration)).await?;
    rows.push(cart_row(
        &format!("Many carts: adds/s, {} customers, 64 clients", suite.users),
        &many,
        0.7,
    ));

    eprintln!("[bench] logins and GET /users/me, through nginx and direct");
    let users = user::measure(
        settings,
        &UserBench {
            duration: suite.duration / 2,
            rounds: 1,
            concurrency: 16,
            addresses: 64,
            gateway: suite.gateway.clone(),
        },
    )
    .await?;
    rows.push(Row {
        what: "Logins/s through nginx, 16 clients".to_owned(),
        figure: format!("{:.1}/s", users.logins),
        baseline: format!(
            "{:.1}/s raw argon2id verifications",
            users.raw_verifications
        ),
        ratio: users.logins / users.raw_verifications,
        goal: "≥ 0.8×",
        met: Some(users.logins / users.raw_verifications >= 0.8),
    });
    rows.push(Row {
        what: "GET /users/me through nginx, 16 clients".to_owned(),
        figure: format!("{:.0}/s", users.me_gateway),
        baseline: format!("{:.0}/s straight to the service", users.me_direct),
        ratio: users.me_gateway / users.me_direct,
        goal: "≥ 0.8×",
        met: Some(users.me_gateway / users.me_direct >= 0.8),
    });

    eprintln!("[bench] checkout -> paid: one shopper, then 16");
    let checkout_with = |shoppers: usize| CheckoutBench {
        duration: suite.duration,
        shoppers,
        products: 300,
        warmup: Duration::from_secs(5),
        no_work: true,
        gateway: suite.gateway.clone(),
    };
    let alone = checkout::measure(settings, &checkout_with(1)).await?;
    let crowd = checkout::measure(settings, &checkout_with(16)).await?;
    rows.push(Row {
        what: "Checkout → paid: orders/s, 16 shoppers".to_owned(),
        figure: format!("{:.1}/s", crowd.paid_per_second),
        baseline: format!("{:.1}/s with 1 shopper", alone.paid_per_second),
        ratio: crowd.paid_per_second / alone.paid_per_second,
        goal: "≥ 200/s",
        met: Some(crowd.paid_per_second >= 200.0),
    });
    rows.push(Row {
        what: "Checkout → paid: POST /orders to OrderPaid p99, 16 shoppers".to_owned(),
        figure: format!("{:.0} ms (p50 {:.0} ms)", crowd.to_paid.1, crowd.to_paid.0),
        baseline: format!("{:.0} ms with 1 shopper", alone.to_paid.1),
        ratio: crowd.to_paid.1 / alone.to_paid.1,
        goal: "< 250 ms",
        met: Some(crowd.to_paid.1 < 250.0),
    });
    rows.push(Row {
        what: "Checkout → paid: POST /orders to OrderPaid p50, 1 shopper".to_owned(),
        figure: format!("{:.0} ms", alone.to_paid.0),
        baseline: format!("{:.0} ms POST /orders alone", alone.posting.0),
        ratio: alone.to_paid.0 / alone.posting.0,
        goal: "< 60 ms",
        met: Some(alone.to_paid.0 < 60.0),
    });

    eprintln!("[bench] cart p99 alone, then during a login storm");
    let quiet = cart_load::measure_cart(settings, &carts(false, 100, 16, suite.duration)).await?;
    let storm = login_storm(
        settings,
        &suite.gateway,
        suite.duration + Duration::from_secs(2),
    );
    let (stormy, logins) = tokio::join!(
        async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            cart_load::measure_cart(settings, &carts(false, 100, 16, suite.duration)).await
        },
        storm
    );
    let (stormy, logins) = (stormy?, logins?);
    rows.push(Row {
        what: format!(
            "Cart add p99 during a login storm ({:.0} logins/s), 16 clients",
            logins
        ),
        figure: format!("{:.1} ms", stormy.latency_ms.p99),
        baseline: format!("{:.1} ms without logins", quiet.latency_ms.p99),
        ratio: stormy.latency_ms.p99 / quiet.latency_ms.p99,
        goal: "none set (never blocked)",
        met: None,
    });

    // Awake actors first, while the heap holds little that was freed and could be reused.
    let mib = |bytes: f64| bytes / (1024.0 * 1024.0);
    eprintln!("[bench] memory of {} awake cart actors", suite.awake_carts);
    let awake = cart_load::start_idle_carts(settings, suite.awake_carts, 64).await?;
    let each = awake.bytes_per_actor();
    rows.push(Row {
        what: format!("Memory of {} awake cart actors, each", suite.awake_carts),
        figure: format!("{:.2} KB", each / 1000.0),
        baseline: format!(
            "{:.0} MiB cart service before, whose heap reuses what earlier carts freed",
            mib(awake.rss_before)
        ),
        ratio: awake.rss / awake.rss_before,
        goal: "< 4 KB",
        met: Some(each < 4000.0),
    });
    // They hibernate before the next measurement starts from what the service then holds.
    cart_load::hibernated_carts(settings, suite.awake_carts).await?;

    eprintln!(
        "[bench] memory of {} idle carts, once hibernated",
        suite.idle_carts
    );
    let idle = cart_load::start_idle_carts(settings, suite.idle_carts, 64).await?;
    let hibernated = cart_load::hibernated_carts(settings, suite.idle_carts).await?;
    rows.push(Row {
        what: format!(
            "Memory of {} hibernated carts: the cart service's resident size",
            suite.idle_carts
        ),
        // What the carts alone hold is not the difference: the heap reuses what the carts
        // started before them freed, so the difference can be below zero.
        figure: format!("{:.0} MiB", mib(hibernated.rss)),
        baseline: format!(
            "{:.0} MiB before; {:.0} MiB when the last had started ({:.0} awake then)",
            mib(idle.rss_before),
            mib(idle.rss),
            idle.actors
        ),
        ratio: hibernated.rss / idle.rss_before,
        goal: "< 300 MB",
        met: Some(hibernated.rss < 300e6),
    });

    print_table(&rows);
    let lost = hot.lost_updates.len() + many.lost_updates.len();
    if lost > 0 {
        anyhow::bail!("{lost} cart lines lost acknowledged adds");
    }
    Ok(())
}

fn cart_row(what: &str, report: &cart_load::Report, goal_ratio: f64) -> Row {
    let ceiling = report.http_ceiling_per_second.unwrap_or(f64::NAN);
    let ratio = report.ratio_to_http_ceiling.unwrap_or(f64::NAN);
    let raw = report.raw_store_inserts_per_second.unwrap_or(f64::NAN);
    Row {
        what: what.to_owned(),
        figure: format!(
            "{:.0}/s, p99 {:.1} ms, {} lost",
            report.acknowledged_per_second,
            report.latency_ms.p99,
            report.lost_updates.len()
        ),
        baseline: format!(
            "{ceiling:.0}/s GET /users/me via nginx, same clients; raw store {raw:.0} inserts/s"
        ),
        ratio,
        goal: if goal_ratio >= 0.9 {
            "≥ 0.9×"
        } else {
            "≥ 0.7×"
        },
        met: Some(ratio >= goal_ratio && report.lost_updates.is_empty()),
    }
}

/// Logins as fast as 16 clients from 64 addresses can send them, for `duration`; logins/s.
async fn login_storm(
    settings: &Settings,
    gateway: &str,
    duration: Duration,
) -> anyhow::Result<f64> {
    let clients = (0..64)
        .map(|index| client_from(loopback(index)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let direct = settings
        .auth
        .user_service_url
        .as_str()
        .trim_end_matches('/')
        .to_owned();
    let email = format!("storm-{}@shop.test", uuid::Uuid::new_v4().simple());
    let password = "storm-password-1234";
    clients[0]
        .post(format!("{direct}/users/register"))
        .json(&serde_json::json!({ "email": email, "password": password, "name": "Storm" }))
        .send()
        .await
        .context("registering the login storm's user")?
        .error_for_status()?;
    let url = format!("{}/users/login", gateway.trim_end_matches('/'));
    let body = serde_json::json!({ "email": email, "password": password });
    let logins = load(
        "POST /users/login (storm)",
        &clients,
        16,
        duration,
        move |client| client.post(&url).json(&body),
    )
    .await;
    Ok(logins.rate())
}

fn print_table(rows: &[Row]) {
    println!();
    println!("| measurement | figure | baseline (same run) | figure / baseline | goal | met |");
    println!("|---|---|---|---|---|---|");
    for row in rows {
        let met = match row.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "—",
        };
        println!(
            "| {} | {} | {} | {:.2}× | {} | {} |",
            row.what, row.figure, row.baseline, row.ratio, row.goal, met
        );
    }
}
