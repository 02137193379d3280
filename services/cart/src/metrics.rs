//! The cart service's own figures on `/metrics`.

use std::sync::LazyLock;

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntGauge, register_histogram, register_int_counter,
    register_int_gauge,
};

pub static CART_ACTORS: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("shop_cart_actors", "cart actors running")
        .expect("the metric is registered once")
});

pub static CART_RESTARTS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "shop_cart_restarts_total",
        "cart actors restarted after failing"
    )
    .expect("the metric is registered once")
});

/// Changes carried per store write: above 1 when group commit batches a hot cart's changes.
pub static CHANGES_PER_WRITE: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        HistogramOpts::new(
            "shop_cart_changes_per_write",
            "cart changes carried by one store write"
        )
        .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0])
    )
    .expect("the metric is registered once")
});

/// Writes refused by the version guard: another process had written the cart.
pub static VERSION_CONFLICTS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "shop_cart_version_conflicts_total",
        "cart writes that lost a version race and were re-applied"
    )
    .expect("the metric is registered once")
});

/// Carts read from the store as their actor started (a cart woken from hibernation is not).
pub static STORE_LOADS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "shop_cart_store_loads_total",
        "carts read from the store as their actor started"
    )
    .expect("the metric is registered once")
});

pub static CARTS_HIBERNATED: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "shop_cart_hibernated",
        "carts hibernated: a record, no actor"
    )
    .expect("the metric is registered once")
});

/// Carts woken from their hibernation record (no store read).
pub static CARTS_WOKEN: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "shop_cart_woken_total",
        "carts woken from their hibernation record, without reading the store"
    )
    .expect("the metric is registered once")
});

/// Versions carried per `insert_many`: above 1 when many carts' writes share one round trip.
pub static VERSIONS_PER_INSERT: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        HistogramOpts::new(
            "shop_cart_versions_per_insert",
            "cart versions carried by one store insert"
        )
        .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0])
    )
    .expect("the metric is registered once")
});
