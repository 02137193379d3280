//! The bridge's figures on `/metrics`.

use std::sync::LazyLock;

use prometheus::{
    IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, register_int_counter,
    register_int_counter_vec, register_int_gauge, register_int_gauge_vec,
};

pub static PUBLISHED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("shop_events_published_total", "events Kafka acknowledged")
        .expect("the metric is registered once")
});

pub static CONSUMED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "shop_events_consumed_total",
        "messages handled and committed by the bridge"
    )
    .expect("the metric is registered once")
});

pub static DEAD_LETTERS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "shop_events_dead_lettered_total",
        "messages sent to a dead-letter topic"
    )
    .expect("the metric is registered once")
});

pub static OUTBOX_PENDING: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "shop_outbox_pending",
        "outbox rows not yet published, as last seen by the relay"
    )
    .expect("the metric is registered once")
});

pub static CONSUMER_LAG: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        Opts::new(
            "shop_kafka_consumer_lag",
            "messages a consumer group is behind the end of a partition"
        ),
        &["group", "topic", "partition"]
    )
    .expect("the metric is registered once")
});

pub static CONSUMER_MEMBER: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        Opts::new(
            "shop_kafka_consumer_member",
            "1 while the bridge's consumer is a member of its group with its assignment in hand"
        ),
        &["group"]
    )
    .expect("the metric is registered once")
});

pub static CONSUMER_ASSIGNED: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        Opts::new(
            "shop_kafka_consumer_assigned_partitions",
            "partitions assigned to the bridge's consumer by its group's last rebalance"
        ),
        &["group"]
    )
    .expect("the metric is registered once")
});

pub static CONSUMER_SINCE_PROGRESS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        Opts::new(
            "shop_kafka_consumer_seconds_since_progress",
            "seconds since the consumer last received a message or was a member with nothing left to read"
        ),
        &["group"]
    )
    .expect("the metric is registered once")
});

pub static CONSUMER_RESTARTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        Opts::new(
            "shop_kafka_consumer_restarts_total",
            "bridges failed so that a fresh consumer replaces theirs, by reason"
        ),
        &["group", "reason"]
    )
    .expect("the metric is registered once")
});
