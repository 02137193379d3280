//! Orders as a customer sees them: checking out, waiting for an order or a product's stock.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use super::{Shopper, get_json, url};

/// What the order tests ask of a shopper, besides the shared basics.
pub trait Ordering {
    async fn put_in_cart(&self, product: &str, quantity: i64);
    /// Checks out with `payment_method`, shipped `standard` to [`berlin`].
    async fn checkout_with(&self, key: &str, payment_method: &str) -> reqwest::Response;
    /// Checks out with a body of the test's own.
    async fn checkout_body(&self, key: &str, body: &Value) -> reqwest::Response;
    async fn checkout(&self, payment_method: &str) -> Value;
    async fn order(&self, id: &str) -> Value;
}

impl Ordering for Shopper {
    async fn put_in_cart(&self, product: &str, quantity: i64) {
        assert_eq!(
            self.add(product, quantity).await.status(),
            StatusCode::OK,
            "adding to the cart"
        );
    }

    async fn checkout_with(&self, key: &str, payment_method: &str) -> reqwest::Response {
        self.checkout_body(key, &checkout_body(payment_method))
            .await
    }

    async fn checkout_body(&self, key: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(url("/orders"))
            .bearer_auth(&self.token)
            .header("idempotency-key", key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Checks out with a fresh key; asserts 201 and returns the order.
    async fn checkout(&self, payment_method: &str) -> Value {
        let response = self
            .checkout_with(&Uuid::new_v4().to_string(), payment_method)
            .await;
        let status = response.status();
        let body: Value = response.json().await.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    async fn order(&self, id: &str) -> Value {
        get_json(
            &self.client,
            url(&format!("/orders/{id}")),
            Some(&self.token),
        )
        .await
    }
}

/// An address in Berlin (domestic for the default shipping table: standard costs 4.90 EUR
/// below 50 EUR of goods, 19% tax included in the prices).
pub fn berlin() -> Value {
    json!({
        "name": "Ada Lovelace", "line1": "Unter den Linden 1", "city": "Berlin",
        "postal_code": "10117", "country": "DE", "phone": "+4930123456"
    })
}

/// A checkout body: `payment_method`, shipped `standard` to [`berlin`].
pub fn checkout_body(payment_method: &str) -> Value {
    json!({
        "payment_method": payment_method,
        "address": berlin(),
        "shipping_method": "standard",
    })
}

/// Products (as the admin) with the given stock and price 1000 + index cents.
pub async fn products(stock: &[i32]) -> Vec<String> {
    super::products_on_a_shelf("Order thing", 1000, stock).await
}

pub async fn stock(product: &str) -> Value {
    let admin = Shopper::admin().await;
    admin
        .get(&format!("/products/{product}/stock"))
        .await
        .json()
        .await
        .unwrap()
}

/// Waits (up to 30 s) until `check` holds for the order as its customer sees it.
pub async fn order_until(
    shopper: &Shopper,
    id: &str,
    what: &str,
    check: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let order = shopper.order(id).await;
        if check(&order) {
            return order;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the order never became {what}: {order}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn state_becomes(shopper: &Shopper, id: &str, state: &str) -> Value {
    order_until(shopper, id, state, |order| order["state"] == state).await
}

/// Waits (up to 30 s) until the product's stock matches.
pub async fn stock_until(product: &str, on_hand: i64, reserved: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = stock(product).await;
        if now["on_hand"] == on_hand && now["reserved"] == reserved {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stock never became on_hand {on_hand}, reserved {reserved}: {now}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn uuid(value: &Value) -> Uuid {
    value.as_str().unwrap().parse().unwrap()
}
