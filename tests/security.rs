//! The security suite's own tests (`dev/test --security` runs them after schemathesis; the
//! ordinary run includes them too): another customer's ids give nothing away, and every
//! operation of every OpenAPI document answers a malformed or oversized body with a problem
//! that names no internals. Token attacks are in tests/tokens.rs, login brute force and the
//! gateway's limits in tests/gateway.rs.

mod common;

use common::orders::{Ordering, products, state_becomes};
use common::{Shopper, client, get_json, url};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Words that would betray how Shop is built if an error body carried them.
const INTERNALS: &[&str] = &[
    "panicked",
    "backtrace",
    ".rs:",
    "src/",
    "sqlx",
    "postgres",
    "sqlstate",
    "select ",
    "insert into",
    "mongo",
    "ferretdb",
    "kafka",
    "ractor",
    "tokio",
    "thread '",
];

fn assert_tells_nothing_inside(what: &str, body: &str) {
    let lower = body.to_lowercase();
    for word in INTERNALS {
        assert!(
            !lower.contains(word),
            "{what}: the answer names {word:?}: {body}"
        );
    }
}

/// Every operation of every service's OpenAPI document (through nginx) that takes a JSON body:
/// its method and its path with each `{parameter}` filled with a fresh UUID.
async fn json_operations() -> Vec<(Method, String)> {
    let mut operations = Vec::new();
    for document in [
        "users",
        "products",
        "carts",
        "orders",
        "payments",
        "notifications",
    ] {
        let spec = get_json(&client(), url(&format!("/{document}/openapi.json")), None).await;
        for (path, item) in spec["paths"].as_object().into_iter().flatten() {
            if path.starts_with("/internal/") {
                continue; // not reachable through the gateway (tests/reservations.rs)
            }
            for (method, operation) in item.as_object().into_iter().flatten() {
                let takes_json = operation["requestBody"]["content"]
                    .as_object()
                    .is_some_and(|content| content.keys().any(|k| k.contains("json")));
                if !takes_json {
                    continue;
                }
                let filled = path
                    .split('/')
                    .map(|segment| {
                        if segment.starts_with('{') {
                            uuid::Uuid::new_v4().to_string()
                        } else {
                            segment.to_owned()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("/");
                let method = Method::from_bytes(method.to_uppercase().as_bytes())
                    .expect("OpenAPI methods are HTTP methods");
                operations.push((method, filled));
            }
        }
    }
    assert!(
        operations.len() >= 15,
        "the documents list the JSON operations: {operations:?}"
    );
    operations
}

#[tokio::test]
async fn every_json_operation_answers_malformed_json_with_a_400_problem() {
    let admin = Shopper::admin().await;
    for (method, path) in json_operations().await {
        let response = admin
            .client
            .request(method.clone(), url(&path))
            .bearer_auth(&admin.token)
            .header("content-type", "application/json")
            .body(r#"{"name": "unfinished"#)
            .send()
            .await
            .expect("the gateway answers");
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = response.text().await.unwrap_or_default();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {path}: {body}");
        assert!(
            content_type.starts_with("application/problem+json"),
            "{method} {path}: {content_type}"
        );
        assert_tells_nothing_inside(&format!("{method} {path}"), &body);
    }
}

#[tokio::test]
async fn every_json_operation_answers_a_body_over_the_limit_with_a_413_problem() {
    let admin = Shopper::admin().await;
    let oversized = json!({ "name": "x".repeat(100 * 1024) }).to_string();
    for (method, path) in json_operations().await {
        let response = admin
            .client
            .request(method.clone(), url(&path))
            .bearer_auth(&admin.token)
            .header("content-type", "application/json")
            .body(oversized.clone())
            .send()
            .await
            .expect("the gateway answers");
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert_eq!(
            status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "{method} {path}: {body}"
        );
        let problem: Value = serde_json::from_str(&body).expect("a problem body");
        assert_eq!(problem["status"], 413, "{method} {path}: {body}");
    }
}

#[tokio::test]
async fn another_customers_ids_are_403_or_404_and_give_nothing_away() {
    // The victim has an account, a cart, a paid order, its payment and notifications.
    let product = &products(&[10]).await[0];
    let victim = Shopper::customer().await;
    victim.put_in_cart(product, 1).await;
    let order = victim.checkout("pm_card_visa").await;
    let order_id = order["id"].as_str().expect("an order id").to_owned();
    state_becomes(&victim, &order_id, "paid").await;
    victim.put_in_cart(product, 1).await;
    let payments = get_json(
        &victim.client,
        url(&format!("/payments?order_id={order_id}")),
        Some(&victim.token),
    )
    .await;
    let payment_id = payments["items"][0]["id"]
        .as_str()
        .expect("the victim's payment")
        .to_owned();
    let notifications = get_json(
        &victim.client,
        url("/notifications/me"),
        Some(&victim.token),
    )
    .await;
    let notification_id = notifications["items"][0]["id"]
        .as_str()
        .expect("the victim's welcome notification")
        .to_owned();

    let attacker = Shopper::customer().await;
    let victim_id = &victim.id;
    let attempts: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, format!("/users/{victim_id}"), None),
        (
            Method::PUT,
            format!("/users/{victim_id}"),
            Some(json!({ "name": "Taken Over" })),
        ),
        (Method::GET, format!("/carts/{victim_id}"), None),
        (Method::GET, format!("/orders/{order_id}"), None),
        (
            Method::GET,
            format!("/orders?customer_id={victim_id}"),
            None,
        ),
        (Method::POST, format!("/orders/{order_id}/cancel"), None),
        (Method::POST, format!("/orders/{order_id}/ship"), None),
        (Method::POST, format!("/orders/{order_id}/deliver"), None),
        (Method::GET, format!("/payments/{payment_id}"), None),
        (
            Method::GET,
            format!("/payments?customer_id={victim_id}"),
            None,
        ),
        (
            Method::POST,
            format!("/payments/{payment_id}/refunds"),
            Some(json!({ "amount": 1 })),
        ),
        (
            Method::GET,
            format!("/notifications/{notification_id}"),
            None,
        ),
        (
            Method::GET,
            format!("/notifications?user_id={victim_id}"),
            None,
        ),
        (
            Method::POST,
            format!("/notifications/{notification_id}/retry"),
            None,
        ),
    ];
    for (method, path, body) in attempts {
        let mut request = attacker
            .client
            .request(method.clone(), url(&path))
            .bearer_auth(&attacker.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the gateway answers");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(
            status == StatusCode::FORBIDDEN || status == StatusCode::NOT_FOUND,
            "{method} {path} as another customer: {status} {text}"
        );
        assert!(
            !text.contains(&victim.email) && !text.contains("\"lines\""),
            "{method} {path} gave the victim's data away: {text}"
        );
        assert_tells_nothing_inside(&format!("{method} {path}"), &text);
    }

    // A filter on someone else's order finds nothing of theirs.
    let filtered = get_json(
        &attacker.client,
        url(&format!("/payments?order_id={order_id}")),
        Some(&attacker.token),
    )
    .await;
    assert_eq!(filtered["items"], json!([]), "{filtered}");

    // And nothing changed for the victim.
    let after = victim.order(&order_id).await;
    assert_eq!(after["state"], "paid", "{after}");
    let me = get_json(&victim.client, url("/users/me"), Some(&victim.token)).await;
    assert_ne!(me["name"], "Taken Over", "{me}");
}
