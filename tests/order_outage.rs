//! Checkout while the product or the cart service is down: 503, and nothing half done — no
//! order without a reservation, no reservation without an order; and an unpaid order whose time
//! ran out while the order service was down is cancelled when it is back. Alone in its test
//! binary: it stops services of the system dev/test started, and starts them again.

mod common;

use common::{admin, category, client, customer, dev, get_json, problem, product, url};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Runs a function of dev/lib.sh against the instance dev/test started.

#[tokio::test]
async fn checkout_with_a_service_down_is_503_and_leaves_nothing_behind() {
    let client = client();
    let admin = admin(&client).await.access_token;
    let shelf = category(&client, &admin, None).await;
    let thing = product(
        &client,
        &admin,
        shelf["id"].as_str().unwrap(),
        "Outage thing",
        500,
        5,
    )
    .await;
    let thing = thing["id"].as_str().unwrap();
    let shopper = customer(&client).await;
    let added = client
        .post(url("/carts/me/items"))
        .bearer_auth(&shopper.access_token)
        .json(&json!({ "product_id": thing, "quantity": 2 }))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), StatusCode::OK);
    let checkout = |key: &'static str| {
        client
            .post(url("/orders"))
            .bearer_auth(&shopper.access_token)
            .header("idempotency-key", key)
            .json(&common::orders::checkout_body(
                "pm_card_authenticationRequired",
            ))
            .send()
    };
    let orders = || get_json(&client, url("/orders"), Some(&shopper.access_token));

    dev("stop_pid product");
    let body = problem(checkout("outage-1").await.unwrap(), 503).await;
    assert!(
        body["detail"].as_str().unwrap().contains("product"),
        "{body}"
    );
    // The gateway itself answers for a service that is down: 503 problem+json, not a bare 502.
    let down = problem(client.get(url("/products")).send().await.unwrap(), 503).await;
    assert!(
        down["detail"].as_str().unwrap().contains("not available"),
        "{down}"
    );
    dev("start_services");
    assert_eq!(orders().await["total"], 0, "no order without a reservation");
    let stock: Value = get_json(
        &client,
        url(&format!("/products/{thing}/stock")),
        Some(&admin),
    )
    .await;
    assert_eq!(stock["reserved"], 0);

    dev("stop_pid cart");
    let body = problem(checkout("outage-2").await.unwrap(), 503).await;
    assert!(body["detail"].as_str().unwrap().contains("cart"), "{body}");
    dev("start_services");
    assert_eq!(orders().await["total"], 0);
    let stock: Value = get_json(
        &client,
        url(&format!("/products/{thing}/stock")),
        Some(&admin),
    )
    .await;
    assert_eq!(stock["reserved"], 0, "no reservation without an order");

    // Back up: the same key that failed now places the order.
    let placed = checkout("outage-1").await.unwrap();
    assert_eq!(placed.status(), StatusCode::CREATED);
    assert_eq!(orders().await["total"], 1);
    let placed: Value = placed.json().await.unwrap();

    // The order service dies while the order waits for payment, and is down when its grace
    // period (15 s under dev/test) ends: started again, it cancels the order all the same.
    dev("stop_pid order");
    let pay_by: chrono::DateTime<chrono::Utc> = placed["pay_by"].as_str().unwrap().parse().unwrap();
    let left = (pay_by - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(left + std::time::Duration::from_secs(1)).await;
    dev("start_services");
    let path = format!("/orders/{}", placed["id"].as_str().unwrap());
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let order = get_json(&client, url(&path), Some(&shopper.access_token)).await;
        if order["state"] == "cancelled" {
            assert_eq!(order["history"][1]["by"], "system");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never cancelled: {order}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let stock: Value = get_json(
            &client,
            url(&format!("/products/{thing}/stock")),
            Some(&admin),
        )
        .await;
        if stock["reserved"] == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stock never released: {stock}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
