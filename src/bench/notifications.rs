//! `shop bench notifications`: `UserRegistered` events published straight to Kafka as fast as
//! they go, each becoming a welcome mail that the notification service renders, logs and sends
//! through SMTP (Mailpit under dev/up). Reports mails sent/s and the time from the event to
//! `sent` in the delivery log.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use shop_config::Settings;
use shop_schemas::UserRegistered;
use uuid::Uuid;

#[derive(Args)]
pub struct NotificationsBench {
    /// Events to publish.
    #[arg(long, default_value_t = 2000)]
    events: usize,
    /// Events published per second; 0 publishes them all at once (a burst).
    #[arg(long, default_value_t = 100)]
    rate: u32,
}

pub async fn run(settings: &Settings, args: NotificationsBench) -> anyhow::Result<()> {
    let pool = shop_web::postgres::connect(&settings.postgres, shop_notification::DATABASE, &[])
        .await
        .context("the notification database")?;
    let producer = shop_bridge::kafka::producer(&settings.kafka)?;
    println!(
        "shop bench notifications: {} UserRegistered events at {} -> welcome mails through SMTP",
        args.events,
        if args.rate == 0 {
            "once".to_owned()
        } else {
            format!("{}/s", args.rate)
        }
    );
    let mut pace = (args.rate > 0)
        .then(|| tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(args.rate))));
    let run = Uuid::new_v4().simple().to_string();
    let started = Instant::now();
    let mut occurred = HashMap::with_capacity(args.events);
    let mut sends = Vec::with_capacity(args.events);
    for n in 0..args.events {
        if let Some(pace) = pace.as_mut() {
            pace.tick().await;
        }
        let event = UserRegistered {
            event_id: Uuid::new_v4(),
            occurred_at: shop_schemas::now_millis(),
            user_id: Uuid::new_v4(),
            email: format!("bench-{run}-{n}@shop.test"),
            name: format!("Bench {n}"),
            phone: None,
            verification_token: None,
            verification_expires_at: None,
        };
        occurred.insert(event.event_id, event.occurred_at);
        let message = shop_bridge::Outgoing::event(&event.into(), None)?;
        let producer = producer.clone();
        sends.push(tokio::spawn(async move {
            shop_bridge::kafka::publish(&producer, &message).await
        }));
    }
    for send in sends {
        send.await??;
    }
    let published = started.elapsed();

    let ids: Vec<Uuid> = occurred.keys().copied().collect();
    let deadline = Instant::now() + Duration::from_secs(300);
    let sent: Vec<(Uuid, i64)> = loop {
        let rows: Vec<(Uuid, String, Option<f64>)> = sqlx::query_as(
            "select event_id, status, extract(epoch from sent_at)::float8 * 1000
             from deliveries where event_id = any($1)",
        )
        .bind(&ids)
        .fetch_all(&pool)
        .await?;
        let sent: Vec<(Uuid, i64)> = rows
            .into_iter()
            .filter(|(_, status, _)| status == "sent")
            .filter_map(|(id, _, at)| at.map(|at| (id, at as i64)))
            .collect();
        if sent.len() == ids.len() || Instant::now() > deadline {
            break sent;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    anyhow::ensure!(!sent.is_empty(), "nothing was sent");
    let mut latencies: Vec<i64> = sent
        .iter()
        .filter_map(|(id, at)| occurred.get(id).map(|occurred| at - occurred))
        .collect();
    latencies.sort_unstable();
    let first = occurred.values().copied().min().unwrap_or_default();
    let last = sent.iter().map(|(_, at)| *at).max().unwrap_or_default();
    let span = ((last - first) as f64 / 1000.0).max(0.001);
    let at = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    println!(
        "  published {} events in {:.2} s; {} of {} mails sent",
        ids.len(),
        published.as_secs_f64(),
        sent.len(),
        ids.len()
    );
    println!(
        "  mails sent                  {:.1}/s (first event to last mail {:.1} s)",
        sent.len() as f64 / span,
        span
    );
    println!(
        "  event -> sent               p50 {} ms, p99 {} ms",
        at(0.5),
        at(0.99)
    );
    anyhow::ensure!(
        sent.len() == ids.len(),
        "{} mails were never sent",
        ids.len() - sent.len()
    );
    Ok(())
}
