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

    // Rounds of concurrent adds, half through each process, until the processes have raced at
    // least once (the version-conflict counters moved). A new product each round keeps every
    // line under the 99 a line holds.
    let raced_before = conflicts(&client, &first).await + conflicts(&client, &second).await;
    let mut rounds: Vec<(String, i64)> = Vec::new();
    for _ in 0..10 {
        let product = common::product(&client).await;
        let adds = (0..32).map(|n| {
            let (client, token, product) = (client.clone(), token.clone(), product.clone());
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
        rounds.push((product, acknowledged));
        let raced = conflicts(&client, &first).await + conflicts(&client, &second).await;
        if raced > raced_before {
            break;
        }
    }
    let raced = conflicts(&client, &first).await + conflicts(&client, &second).await;
    assert!(
        raced > raced_before,
        "the two processes never raced in {} rounds: the test proved nothing",
        rounds.len()
    );

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
    for (product, acknowledged) in &rounds {
        let line = stored["items"]
            .as_array()
            .expect("lines")
            .iter()
            .find(|line| line["product_id"] == product.as_str())
            .expect("the round's product is in the cart");
        assert_eq!(line["quantity"], *acknowledged, "product {product}");
    }
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
