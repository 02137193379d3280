//! Checkout with `SHOP_CHECKOUT_REQUIRE_VERIFIED_EMAIL` on, as production runs it (dev/test runs
//! it off, like dev/up): an unverified customer is refused with a 403 that says what to do,
//! nothing is reserved, and the same checkout goes through once the email is proven. Alone in
//! its test binary: it restarts the order service with the setting, and again without it.

mod common;

use common::orders::{Ordering, products, stock_until};
use common::{Shopper, dev, mailed_token, problem, url};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Puts the order service back as dev/test runs it, however the test ends.
struct OrderServiceRestored;

impl Drop for OrderServiceRestored {
    fn drop(&mut self) {
        dev("stop_pid order && start_services");
    }
}

#[tokio::test]
async fn checkout_needs_a_verified_email_when_the_shop_asks_for_one() {
    let shelf = products(&[5]).await;
    let shopper = Shopper::customer().await;
    shopper.put_in_cart(&shelf[0], 2).await;

    let restored = OrderServiceRestored;
    dev("stop_pid order && SHOP_CHECKOUT_REQUIRE_VERIFIED_EMAIL=true start_services");
    let key = uuid::Uuid::new_v4().to_string();
    let refused = problem(shopper.checkout_with(&key, "pm_card_visa").await, 403).await;
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("verified email"),
        "{refused}"
    );
    stock_until(&shelf[0], 5, 0).await;

    let token = mailed_token(&shopper.email, "Welcome").await;
    let verified = shopper
        .client
        .post(url("/users/verify-email"))
        .bearer_auth(&shopper.token)
        .json(&json!({ "token": token }))
        .send()
        .await
        .unwrap();
    assert_eq!(verified.status(), StatusCode::OK);
    // The same key: the refused attempt left nothing behind it.
    let placed = shopper.checkout_with(&key, "pm_card_visa").await;
    let status = placed.status();
    let order: Value = placed.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{order}");

    drop(restored);
    // Off again: an unverified customer checks out.
    let unverified = Shopper::customer().await;
    unverified.put_in_cart(&shelf[0], 1).await;
    unverified.checkout("pm_card_visa").await;
}
