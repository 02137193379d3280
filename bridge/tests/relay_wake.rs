//! Relays are woken by their own process's commits, not by NOTIFY: a relay that finds another
//! replica's relay publishing must still publish what was committed meanwhile, although the
//! other may end its last round without having seen the row.

mod common;

use std::time::{Duration, Instant};

use common::{enqueue, unique, user_registered, wait_for};
use ractor::Actor;
use shop_schemas::Envelope;

#[tokio::test]
async fn a_row_committed_while_another_relay_publishes_is_not_left_behind() {
    let settings = common::settings();
    // A database of its own: no other relay anywhere may publish the row for ours.
    let pool = shop_web::postgres::connect(
        &settings.postgres,
        "shop_bridge_wake_test",
        &[&shop_bridge::migrator()],
    )
    .await
    .expect("the test database");
    let (bridge, seen) = common::recording_bridge(&settings).await;
    // Polling far beyond the test: only a wake-up can publish in time.
    let args = shop_bridge::RelayArgs {
        pool: pool.clone(),
        bridge: bridge.to_owned(),
        poll: Duration::from_secs(600),
    };
    Actor::spawn(
        Some(unique("relay").to_owned()),
        shop_bridge::OutboxRelay,
        args,
    )
    .await
    .expect("the relay starts");
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Another replica's relay in the middle of a round: it holds the publishing lock.
    let mut other_relay = pool.begin().await.expect("a transaction");
    let leads: bool = sqlx::query_scalar("select pg_try_advisory_xact_lock(hashtext($1))")
        .bind(shop_bridge::outbox::CHANNEL)
        .fetch_one(&mut *other_relay)
        .await
        .expect("the lock");
    assert!(leads, "no relay of this database held the lock");

    let event = user_registered("Behind a busy relay");
    let ours = |seen: &Envelope| seen.event_id() == event.event_id;
    enqueue(&pool, &event).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(
        !seen.lock().unwrap().iter().any(ours),
        "published while another relay held the lock: rows could overtake each other"
    );

    // The other relay's round ends without the row.
    other_relay.rollback().await.expect("the rollback");
    let released = Instant::now();
    assert!(wait_for(&seen, 1, ours).await, "the row was left behind");
    assert!(
        released.elapsed() < Duration::from_secs(5),
        "published only after {:?}",
        released.elapsed()
    );
}
