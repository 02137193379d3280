//! The bridge's watchdog against the real Kafka dev/test started: a consumer that cannot get
//! into its group while the cluster answers is declared stuck, its bridge fails, and its
//! supervisor starts a fresh one, which reads once it can; one that keeps getting stuck
//! escalates past its restart budget.
//!
//! The consumer is kept out for real, by a `shop_bridge::testing::GroupBlocker`: another member
//! holds the group with an assignment strategy the bridge's consumer does not speak, so every
//! JoinGroup of the bridge is refused while metadata requests succeed — the same outward shape
//! as a consumer wedged after a coordinator moved.

mod common;

use std::time::Duration;

use common::{Answer, subscriptions, unique, user_registered, wait_for};
use ractor::ActorStatus;
use shop_actors::supervisor::SupervisorSpec;
use shop_actors::tree::{SnapshotLimits, snapshot};
use shop_bridge::testing::GroupBlocker;
use shop_schemas::{Envelope, Event, USERS, encode};

async fn blocker(settings: &shop_config::Settings, group: &str) -> GroupBlocker {
    GroupBlocker::hold(&settings.kafka, group, &[USERS], Duration::from_secs(30))
        .await
        .expect("the blocker holds the group")
}

fn kafka_settings(
    stuck_after: Duration,
    restarts_per_hour: u32,
) -> (shop_config::Settings, shop_config::KafkaSettings) {
    let settings = common::settings();
    let mut kafka = settings.kafka.clone();
    kafka.stuck_after = stuck_after;
    kafka.stuck_restarts_per_hour = restarts_per_hour;
    (settings, kafka)
}

/// The value of a counter in this process's registry, with these labels.
fn counter(name: &str, labels: &[(&str, &str)]) -> f64 {
    prometheus::gather()
        .iter()
        .filter(|family| family.name() == name)
        .flat_map(|family| family.get_metric().iter())
        .filter(|metric| {
            labels.iter().all(|(label, value)| {
                metric
                    .get_label()
                    .iter()
                    .any(|pair| pair.name() == *label && pair.value() == *value)
            })
        })
        .map(|metric| metric.get_counter().value())
        .sum()
}

#[tokio::test]
async fn a_consumer_kept_out_of_its_group_is_restarted_fresh_and_reads_once_it_can_join() {
    let (settings, kafka) = kafka_settings(Duration::from_secs(4), 6);
    let group = unique("stuck-group");
    let blocker = blocker(&settings, group).await;

    let recorder = unique("recorder");
    let (_, seen) = common::recorder(recorder, Answer::Done, None).await;
    let bridge = unique("bridge");
    let supervisor = SupervisorSpec::new(unique("supervisor"))
        .child(shop_bridge::bridge_child(
            bridge,
            group,
            &kafka,
            subscriptions(recorder),
        ))
        .spawn()
        .await
        .expect("the supervisor starts");

    // Stuck after 4 s out of the group; the supervisor starts a fresh bridge.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    let node = loop {
        let tree = snapshot(&supervisor.get_cell(), SnapshotLimits::default());
        if let Some(node) = tree.find(bridge)
            && node.restarts >= 1
            && node.status == "running"
        {
            break node.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the stuck bridge was never restarted: {}",
            tree.render_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let failure = node.last_failure.unwrap_or_default();
    assert!(
        failure.starts_with("consumer stuck: not a member of its group for"),
        "{failure}"
    );
    assert!(
        counter(
            "shop_kafka_consumer_restarts_total",
            &[("group", group), ("reason", "out_of_group")]
        ) >= 1.0
    );

    // The way in is free again: the fresh consumer joins and reads.
    blocker.leave().await;
    let event = user_registered("After the wedge");
    let (payload, _) = encode(&event).expect("encodes");
    shop_bridge::publish_via(
        bridge,
        vec![shop_bridge::Outgoing {
            topic: USERS.to_owned(),
            key: event.aggregate_id().to_string(),
            payload,
            headers: vec![],
        }],
    )
    .await
    .expect("published");
    assert!(
        wait_for(&seen, 1, |e: &Envelope| e.event_id() == event.event_id).await,
        "the restarted bridge never read"
    );
    // Its state says so within a watchdog tick or two.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let tree = snapshot(&supervisor.get_cell(), SnapshotLimits::default());
        let detail = tree
            .find(bridge)
            .and_then(|node| node.detail.clone())
            .unwrap_or_default();
        if detail.starts_with("consumer joined") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{detail}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    supervisor.stop(None);
}

#[tokio::test]
async fn a_consumer_that_keeps_getting_stuck_escalates_past_its_budget() {
    let (settings, kafka) = kafka_settings(Duration::from_secs(3), 1);
    let group = unique("stuck-group");
    let blocker = blocker(&settings, group).await;

    let recorder = unique("recorder");
    common::recorder(recorder, Answer::Done, None).await;
    let supervisor = SupervisorSpec::new(unique("supervisor"))
        .child(shop_bridge::bridge_child(
            unique("bridge"),
            group,
            &kafka,
            subscriptions(recorder),
        ))
        .spawn()
        .await
        .expect("the supervisor starts");

    // One restart is within the budget; the second stuck consumer's bridge refuses to start,
    // and the supervisor gives up rather than restarting it forever.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while supervisor.get_status() != ActorStatus::Stopped {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the supervisor still runs after {} stuck consumers",
            counter(
                "shop_kafka_consumer_restarts_total",
                &[("group", group), ("reason", "out_of_group")]
            )
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        counter(
            "shop_kafka_consumer_restarts_total",
            &[("group", group), ("reason", "out_of_group")]
        ),
        2.0
    );
    blocker.leave().await;
}
