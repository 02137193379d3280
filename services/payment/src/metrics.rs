//! The payment service's own figures on `/metrics`.

use std::sync::LazyLock;

use prometheus::{IntCounterVec, Opts, register_int_counter_vec};

pub static WEBHOOKS_REFUSED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        Opts::new(
            "shop_payment_webhooks_refused_total",
            "signed Stripe webhooks that did not match the order's payment, by what differed"
        ),
        &["mismatch"]
    )
    .expect("the metric is registered once")
});
