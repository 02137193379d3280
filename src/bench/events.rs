//! `shop bench events`: events through the whole pipe — written to an outbox in a transaction,
//! published by the relay through the bridge to Kafka, consumed by a bridge, delivered to an
//! actor — and the time from the writer's commit to the actor's delivery.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use shop_bridge::{Ack, Delivery, Subscriber, Subscriptions};
use shop_config::Settings;
use shop_schemas::UserRegistered;
use uuid::Uuid;

#[derive(Args)]
pub struct EventsBench {
    /// How long writers write, e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Concurrent writers, each committing one event per transaction.
    #[arg(long, default_value_t = 8)]
    writers: usize,
}

type Times = Arc<Mutex<HashMap<Uuid, Instant>>>;

struct Receiver;

impl Actor for Receiver {
    type Msg = Delivery;
    type State = Times;
    type Arguments = Times;

    async fn pre_start(
        &self,
        _: ActorRef<Delivery>,
        times: Times,
    ) -> Result<Times, ActorProcessingErr> {
        Ok(times)
    }

    async fn handle(
        &self,
        _: ActorRef<Delivery>,
        delivery: Delivery,
        times: &mut Times,
    ) -> Result<(), ActorProcessingErr> {
        if let Ok(mut times) = times.lock() {
            times
                .entry(delivery.event.event_id())
                .or_insert_with(Instant::now);
        }
        let _ = delivery.reply.send(Ack::Done);
        Ok(())
    }
}

pub async fn run(settings: &Settings, args: EventsBench) -> anyhow::Result<()> {
    let pool = shop_web::postgres::connect(
        &settings.postgres,
        "shop_bench_events",
        &[&shop_bridge::migrator()],
    )
    .await?;
    let run = Uuid::new_v4().simple().to_string();
    let name = |what: &str| format!("bench.{what}.{run}");
    let delivered: Times = Arc::new(Mutex::new(HashMap::new()));
    Actor::spawn(Some(name("receiver")), Receiver, delivered.clone())
        .await
        .context("starting the receiver")?;
    // A topic of the run's own: the services' consumers never see benchmark events.
    let topic: &'static str = Box::leak(name("events").into_boxed_str());
    shop_bridge::kafka::create_topics(&settings.kafka, &[topic.to_owned()]).await?;
    let subscriptions = Subscriptions::new()
        .on_topic::<UserRegistered>(topic, Subscriber::deliveries(name("receiver")));
    let group: &'static str = Box::leak(name("group").into_boxed_str());
    let bridge = name("bridge");
    let bridge_args = shop_bridge::BridgeArgs {
        service: group,
        settings: settings.kafka.clone(),
        subscriptions,
    };
    Actor::spawn(Some(bridge.clone()), shop_bridge::Bridge, bridge_args).await?;
    let relay_args = shop_bridge::RelayArgs {
        pool: pool.clone(),
        bridge: bridge.clone(),
        poll: settings.kafka.outbox_poll,
    };
    Actor::spawn(Some(name("relay")), shop_bridge::OutboxRelay, relay_args).await?;
    println!(
        "shop bench events: {} writers for {}, outbox -> relay -> bridge -> Kafka -> bridge -> actor",
        args.writers,
        humantime::format_duration(args.duration)
    );
    // Let the new consumer group settle before timing anything.
    tokio::time::sleep(Duration::from_secs(6)).await;

    let committed: Times = Arc::new(Mutex::new(HashMap::new()));
    let started = Instant::now();
    let writers: Vec<_> = (0..args.writers.max(1))
        .map(|_| {
            let (pool, committed) = (pool.clone(), committed.clone());
            tokio::spawn(async move {
                while started.elapsed() < args.duration {
                    let event = shop_schemas::Envelope::from(UserRegistered {
                        event_id: Uuid::new_v4(),
                        occurred_at: shop_schemas::now_millis(),
                        user_id: Uuid::new_v4(),
                        email: "bench@shop.test".to_owned(),
                        name: "Bench".to_owned(),
                        phone: None,
                        verification_token: None,
                        verification_expires_at: None,
                    });
                    let Ok(mut transaction) = pool.begin().await else {
                        continue;
                    };
                    if shop_bridge::outbox::enqueue_to(&mut transaction, topic, &event, None)
                        .await
                        .is_err()
                    {
                        continue;
                    }
                    // This process runs no relay of that database: tell the service's.
                    if transaction.commit().await.is_ok()
                        && let Ok(mut committed) = committed.lock()
                    {
                        committed.insert(event.event_id(), Instant::now());
                    }
                    let _ = shop_bridge::outbox::announce(&pool).await;
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await?;
    }
    let written = committed.lock().map(|c| c.len()).unwrap_or(0);
    // Wait for the tail to arrive.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let arrived = {
            let delivered = delivered
                .lock()
                .map_err(|_| anyhow::anyhow!("a poisoned lock"))?;
            let committed = committed
                .lock()
                .map_err(|_| anyhow::anyhow!("a poisoned lock"))?;
            committed
                .keys()
                .filter(|id| delivered.contains_key(id))
                .count()
        };
        if arrived >= written || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();
    if let Err(error) = shop_bridge::kafka::delete_topics(&settings.kafka, &[topic]).await {
        tracing::warn!(%error, topic, "deleting the benchmark topic failed");
    }
    let delivered = delivered
        .lock()
        .map_err(|_| anyhow::anyhow!("a poisoned lock"))?;
    let committed = committed
        .lock()
        .map_err(|_| anyhow::anyhow!("a poisoned lock"))?;
    let mut latencies: Vec<Duration> = committed
        .iter()
        .filter_map(|(id, at)| {
            delivered
                .get(id)
                .map(|got| got.saturating_duration_since(*at))
        })
        .collect();
    latencies.sort();
    let at = |p: f64| {
        latencies
            .get(((latencies.len().saturating_sub(1)) as f64 * p).round() as usize)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "  events committed            {written} in {:.1} s",
        args.duration.as_secs_f64()
    );
    println!(
        "  events delivered            {} ({:.0}/s until the last arrived)",
        latencies.len(),
        latencies.len() as f64 / elapsed.as_secs_f64()
    );
    println!(
        "  commit -> delivery          p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        at(0.5),
        at(0.99),
        at(1.0)
    );
    if latencies.len() < written {
        anyhow::bail!("{} events never arrived", written - latencies.len());
    }
    Ok(())
}
