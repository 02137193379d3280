//! Two cart-service processes holding the same cart (this test's own, and the one dev/test runs)
//! never overwrite each other: the version guard makes the loser of a race reload and re-apply.

mod common;

use serde_json::{Value, json};

#[tokio::test]
async fn two_services_adding_to_one_cart_at_once_lose_no_update() {
    let (settings, second) = common::settings(&[]);
    let (service, shutdown) = common::start(&settings).await;
    let first = common::env("SHOP_CART_URL");
    let client = reqwest::Client::new();
    let token = common::customer_token(&client).await;
    let product = common::product(&client).await;

    let adds = (0..32).map(|n| {
        let (client, token, product) = (client.clone(), token.clone(), product.clone());
        // Half the clients talk to each process.
        let base = if n % 2 == 0 {
            first.clone()
        } else {
            second.clone()
        };
        async move {
            let mut acknowledged = 0;
            for _ in 0..3 {
                let response = client
                    .post(format!("{base}/carts/me/items"))
                    .bearer_auth(&token)
                    .json(&json!({ "product_id": product, "quantity": 1 }))
                    .send()
                    .await
                    .expect("a cart service answers");
                if response.status().is_success() {
                    acknowledged += 1;
                }
            }
            acknowledged
        }
    });
    let acknowledged: i64 = futures::future::join_all(adds).await.into_iter().sum();
    assert_eq!(acknowledged, 96, "every add was acknowledged");
    let conflicts = conflicts(&client, &first).await + conflicts(&client, &second).await;
    assert!(
        conflicts > 0.0,
        "the two processes never raced: the test proved nothing"
    );

    for base in [&first, &second] {
        let cart: Value = client
            .get(format!("{base}/carts/me"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("a cart service answers")
            .json()
            .await
            .expect("a cart");
        // Each process answers reads from what it last stored or loaded; the store has all.
        let quantity = cart["items"][0]["quantity"].as_i64().unwrap_or(0);
        assert!(quantity <= acknowledged);
    }
    // Read through a process that has to load the cart afresh: this one, after a restart.
    common::stop(service, shutdown).await;
    let (service, shutdown) = common::start(&settings).await;
    let stored: Value = client
        .get(format!("{second}/carts/me"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("the cart service answers")
        .json()
        .await
        .expect("a cart");
    assert_eq!(stored["items"][0]["quantity"], acknowledged);
    common::stop(service, shutdown).await;
}

/// `shop_cart_version_conflicts_total` of a cart service.
async fn conflicts(client: &reqwest::Client, base: &str) -> f64 {
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("the cart service answers")
        .text()
        .await
        .expect("metrics");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("shop_cart_version_conflicts_total "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}
