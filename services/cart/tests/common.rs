//! Shared by the cart service's in-process tests: a second cart service in this process, beside
//! the one dev/test runs, against the same store.
#![allow(dead_code)]

use std::time::Duration;

use serde_json::{Value, json};
use shop_config::Settings;
use shop_web::Shutdown;

pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run the tests with dev/test"))
}

/// Settings for a cart service of this process: its own free port, `overrides` on top.
pub fn settings(overrides: &[(&str, &str)]) -> (Settings, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port");
    let overrides: Vec<(String, String)> = overrides
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    let settings = Settings::from_lookup(&move |name| {
        if name == "SHOP_CART_PORT" {
            return Some(port.to_string());
        }
        overrides
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
            .or_else(|| std::env::var(name).ok())
    })
    .expect("valid settings");
    (settings, format!("http://127.0.0.1:{port}"))
}

pub async fn start(settings: &Settings) -> (shop_actors::Service, Shutdown) {
    let shutdown = Shutdown::new();
    let service = shop_cart::start(settings, shutdown.clone())
        .await
        .expect("the cart service starts");
    (service, shutdown)
}

pub async fn stop(service: shop_actors::Service, shutdown: Shutdown) {
    shutdown.trigger();
    shutdown.drained(Duration::from_secs(10)).await;
    service.stop(Duration::from_secs(10)).await;
}

/// A new customer's access token, through the gateway.
pub async fn customer_token(client: &reqwest::Client) -> String {
    let gateway = env("SHOP_GATEWAY_URL");
    let email = format!("cart-{}@shop.test", uuid::Uuid::new_v4().simple());
    let password = "correct-horse-battery";
    let registered = client
        .post(format!("{gateway}/users/register"))
        .json(&json!({ "email": email, "password": password, "name": "Two carts" }))
        .send()
        .await
        .expect("the gateway answers");
    assert_eq!(registered.status().as_u16(), 201);
    let tokens: Value = client
        .post(format!("{gateway}/users/login"))
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .expect("the gateway answers")
        .json()
        .await
        .expect("tokens");
    tokens["access_token"].as_str().expect("a token").to_owned()
}

/// A product with plenty of stock, made by the admin through the gateway.
pub async fn product(client: &reqwest::Client) -> String {
    let gateway = env("SHOP_GATEWAY_URL");
    let tokens: Value = client
        .post(format!("{gateway}/users/login"))
        .json(&json!({ "email": env("SHOP_ADMIN_EMAIL"), "password": env("SHOP_ADMIN_PASSWORD") }))
        .send()
        .await
        .expect("the gateway answers")
        .json()
        .await
        .expect("tokens");
    let admin = tokens["access_token"].as_str().expect("a token");
    let category: Value = client
        .post(format!("{gateway}/categories"))
        .bearer_auth(admin)
        .json(&json!({ "name": format!("Carts {}", uuid::Uuid::new_v4().simple()) }))
        .send()
        .await
        .expect("the gateway answers")
        .json()
        .await
        .expect("a category");
    let product: Value = client
        .post(format!("{gateway}/products"))
        .bearer_auth(admin)
        .json(&json!({
            "sku": format!("TWO-{}", uuid::Uuid::new_v4().simple()),
            "name": "Shared thing",
            "price": { "amount": 500, "currency": "EUR" },
            "category_id": category["id"],
            "stock": 100_000,
        }))
        .send()
        .await
        .expect("the gateway answers")
        .json()
        .await
        .expect("a product");
    product["id"].as_str().expect("an id").to_owned()
}
