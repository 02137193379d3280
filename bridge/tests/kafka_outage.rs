//! Kafka stopped while events are written, then started again: every event is published, and
//! none has its effect twice. Alone in its test binary: it stops the Kafka of dev/test.

mod common;

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use common::{enqueue, unique, user_registered, wait_for};

/// Runs a function of dev/lib.sh against the instance dev/test started.
fn dev(function: &str) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let status = Command::new("bash")
        .arg("-c")
        .arg(format!("source dev/lib.sh && {function}"))
        .current_dir(root)
        .env("SHOP_DEV_INSTANCE", "test")
        .env("SHOP_DEV_PORT_OFFSET", "10000")
        .status()
        .expect("bash runs");
    assert!(status.success(), "dev/lib.sh {function} failed");
}

#[tokio::test]
async fn events_written_while_kafka_is_down_are_all_published_once_it_is_back() {
    let settings = common::settings();
    let pool = common::database(&settings).await;
    let (bridge, seen) = common::consumer_through_the_inbox(&settings, &pool).await;
    common::relay(unique("relay"), pool.clone(), bridge, &settings).await;

    // The pipeline works before the outage.
    let before = user_registered("Before the outage");
    enqueue(&pool, &before).await;
    assert!(wait_for(&seen, 1, |e| e.event_id() == before.event_id).await);

    dev("stop_pid kafka");
    let during: Vec<_> = (0..20)
        .map(|n| user_registered(&format!("During {n}")))
        .collect();
    for event in &during {
        enqueue(&pool, event).await;
    }
    // The relay keeps trying while the broker is away.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let pending: i64 = sqlx::query_scalar(
        "select count(*) from outbox where sent_at is null and event_id = any($1)",
    )
    .bind(during.iter().map(|e| e.event_id).collect::<Vec<_>>())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(pending, 20, "nothing can be published while Kafka is down");
    dev("start_kafka");

    let ids: HashSet<uuid::Uuid> = during.iter().map(|e| e.event_id).collect();
    assert!(
        wait_for(&seen, 20, |e| ids.contains(&e.event_id())).await,
        "every event written during the outage arrives"
    );
    let effects: i64 = sqlx::query_scalar("select count(*) from effects where event_id = any($1)")
        .bind(ids.iter().copied().collect::<Vec<_>>())
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(effects, 20, "each once");
}
