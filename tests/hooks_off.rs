//! With `SHOP_TEST_HOOKS` off, as in production: every test hook is unreachable. Run by
//! `dev/test --security`, which restarts the services with the hooks off for its suite (the
//! ordinary run has them on, so these are ignored there).

mod common;

use common::orders::{Ordering, products, state_becomes};
use common::{Shopper, client, env, problem};

#[tokio::test]
#[ignore = "security suite: dev/test --security runs the services with the hooks off"]
async fn the_crash_a_cart_endpoint_is_not_found() {
    let admin = Shopper::admin().await;
    let shopper = Shopper::customer().await;
    let crash = format!("{}/carts/{}/crash", env("SHOP_CART_URL"), shopper.id);
    let answered = client()
        .post(&crash)
        .bearer_auth(&admin.token)
        .send()
        .await
        .expect("the cart service answers");
    problem(answered, 404).await;
}

#[tokio::test]
#[ignore = "security suite: dev/test --security runs the services with the hooks off"]
async fn the_crash_after_charge_payment_method_is_declined_like_any_unknown_one() {
    let shopper = Shopper::customer().await;
    let shelf = products(&[3]).await;
    shopper.put_in_cart(&shelf[0], 1).await;
    let order = shopper.checkout("pm_test_crashAfterCharge").await;
    let id = order["id"].as_str().unwrap_or_default();
    state_becomes(&shopper, id, "cancelled").await;
    let page: serde_json::Value = shopper
        .get(&format!("/payments?order_id={id}"))
        .await
        .json()
        .await
        .expect("a page of payments");
    assert_eq!(page["items"][0]["status"], "failed", "{page}");
    assert_eq!(
        page["items"][0]["failure_code"], "resource_missing",
        "{page}"
    );
}

#[tokio::test]
#[ignore = "security suite: dev/test --security runs the services with the hooks off"]
async fn the_panicking_carts_switch_is_refused_at_start() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_shop"))
        .args(["serve", "cart"])
        .env("SHOP_TEST_CART_PANIC_PERCENT", "1")
        .env_remove("SHOP_TEST_HOOKS")
        .output()
        .await
        .expect("shop runs");
    assert_eq!(output.status.code(), Some(2));
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        said.contains("SHOP_TEST_CART_PANIC_PERCENT: panicking carts is a test hook"),
        "{said}"
    );
}
