//! The payment process dies between charging a card and storing the outcome (a test-only payment
//! method aborts it there). Started again, it finishes the payment: one charge, one outcome.
//! Its own test binary, since it takes the payment service down.

mod common;

use std::time::Duration;

use common::events::Events;
use common::orders::{Ordering, products, state_becomes, uuid};
use common::{Shopper, charges_of, dev, env, get_json, url};

#[tokio::test]
async fn the_payment_process_killed_after_charging_is_restarted_and_the_order_is_charged_once() {
    let events = Events::watch().await;
    let shopper = Shopper::customer().await;
    let shelf = products(&[3]).await;
    shopper.put_in_cart(&shelf[0], 1).await;
    let order = shopper.checkout("pm_test_crashAfterCharge").await;
    let id = order["id"].as_str().unwrap();
    let order_id = uuid(&order["id"]);

    // The charge is made, then the process aborts before the outcome is stored.
    let health = format!("{}/health", env("SHOP_PAYMENT_URL"));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while reqwest::get(&health).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the payment process never died"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(charges_of(order_id).await, 1);
    assert_eq!(shopper.order(id).await["state"], "pending");

    dev("start_services");
    state_becomes(&shopper, id, "paid").await;
    let payment = get_json(
        &shopper.client,
        url(&format!("/payments?order_id={id}")),
        Some(&shopper.token),
    )
    .await;
    assert_eq!(payment["items"][0]["status"], "succeeded");
    assert_eq!(payment["items"][0]["attempts"], 2, "{payment}");
    assert_eq!(charges_of(order_id).await, 1);
    events.wait_for(order_id, "PaymentSucceeded").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let outcomes = events
        .about(order_id)
        .iter()
        .filter(|seen| matches!(seen.event.name(), "PaymentSucceeded" | "PaymentFailed"))
        .count();
    assert_eq!(outcomes, 1);
}
