//! Checkout: the customer's cart becomes a pending order with its stock reserved, or nothing
//! happens at all.
//!
//! 1. The same `Idempotency-Key` again answers the order it made (another body: 422).
//! 2. Read the cart and the customer's name and email, with the customer's own token.
//! 3. Reserve every line at the product service (service token): all or nothing.
//! 4. Store the order as `pending` with `OrderPlaced` in its outbox, in one transaction.
//!
//! A failure after step 3 releases the reservation, so there is never a reservation without an
//! order; the reservation also expires by itself, should the release be lost too.

use std::time::Duration;

use chrono::Utc;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use shop_web::ServiceTokens;
use sqlx::PgPool;
use uuid::Uuid;

use crate::actor::OrderMsg;
use crate::error::{OrderError, Shortage};
use crate::orders::Orders;
use crate::store::{self, LineRow, NewOrder, Order};

/// Longest Idempotency-Key and payment method reference accepted.
const MAX_KEY: usize = 255;

#[derive(Clone)]
pub struct Checkout {
    pub pool: PgPool,
    pub http: reqwest::Client,
    pub cart_url: String,
    pub user_url: String,
    pub product_url: String,
    pub tokens: ServiceTokens,
    pub payment_grace: Duration,
    /// How long a reservation outlives the payment grace period: the order's own timer
    /// releases it first; the product service's expiry is the backstop.
    pub reservation_margin: Duration,
    pub orders: Orders,
}

pub struct CheckoutRequest {
    pub customer_id: Uuid,
    /// The customer's own access token, to read their cart and profile.
    pub bearer: String,
    pub idempotency_key: String,
    pub payment_method: String,
    pub trace_id: Option<String>,
}

pub enum Placed {
    New(Order),
    /// The order an earlier request with this key made.
    Again(Order),
}

#[derive(Deserialize)]
struct CartBody {
    currency: Option<String>,
    items: Vec<CartItem>,
}

#[derive(Deserialize)]
struct CartItem {
    product_id: Uuid,
    name: String,
    unit_price: i64,
    quantity: i32,
}

#[derive(Deserialize)]
struct Profile {
    email: String,
    name: Option<String>,
}

#[derive(Deserialize, Default)]
struct ShortProblem {
    #[serde(default)]
    short: Vec<Shortage>,
    #[serde(default)]
    detail: String,
}

fn visible_ascii(text: &str) -> bool {
    !text.is_empty() && text.len() <= MAX_KEY && text.bytes().all(|b| b.is_ascii_graphic())
}

impl Checkout {
    pub async fn place(&self, request: CheckoutRequest) -> Result<Placed, OrderError> {
        if !visible_ascii(&request.idempotency_key) {
            return Err(OrderError::Invalid(format!(
                "Idempotency-Key must be 1 to {MAX_KEY} visible ASCII characters"
            )));
        }
        if !visible_ascii(&request.payment_method) {
            return Err(OrderError::Invalid(format!(
                "payment_method must be a payment method reference such as pm_card_visa \
                 (1 to {MAX_KEY} visible ASCII characters)"
            )));
        }
        let request_hash = Sha256::digest(request.payment_method.as_bytes()).to_vec();
        if let Some(placed) = self.earlier(&request, &request_hash).await? {
            return Ok(placed);
        }

        let cart = self.cart(&request.bearer).await?;
        let currency = match (cart.currency, cart.items.is_empty()) {
            (Some(currency), false) => currency,
            _ => return Err(OrderError::EmptyCart),
        };
        let profile = self.profile(&request.bearer).await?;
        let order = NewOrder {
            id: Uuid::now_v7(),
            customer_id: request.customer_id,
            customer_name: profile.name.unwrap_or_else(|| profile.email.clone()),
            customer_email: profile.email,
            currency,
            lines: cart
                .items
                .into_iter()
                .map(|item| LineRow {
                    product_id: item.product_id,
                    name: item.name,
                    quantity: item.quantity,
                    unit_price: item.unit_price,
                })
                .collect(),
            payment_method: request.payment_method.clone(),
            idempotency_key: request.idempotency_key.clone(),
            request_hash: request_hash.clone(),
            pay_by: Utc::now() + chrono::Duration::from_std(self.payment_grace).unwrap_or_default(),
        };

        if let Err(error) = self.reserve(&order).await {
            // A twin request with the same key may have taken the stock, and made the order.
            return match self.earlier(&request, &request_hash).await? {
                Some(placed) => Ok(placed),
                None => Err(error),
            };
        }
        let stored = store::insert(&self.pool, &order, request.trace_id.as_deref()).await;
        match stored {
            Ok(true) => {
                self.take_from_cart(&order).await;
                // Its actor arms the payment timer.
                if let Err(error) = self.orders.send(order.id, OrderMsg::Load).await {
                    tracing::warn!(order_id = %order.id, %error, "the order's actor did not start; the sweeper will expire it if unpaid");
                }
                let placed = store::order(&self.pool, order.id)
                    .await?
                    .ok_or(OrderError::NotFound)?;
                tracing::info!(order_id = %order.id, customer_id = %order.customer_id, total = order.total(), "order placed");
                Ok(Placed::New(placed))
            }
            Ok(false) => {
                // A twin request with the same key stored its order first.
                self.release(order.id).await;
                self.earlier(&request, &request_hash)
                    .await?
                    .ok_or(OrderError::Busy)
            }
            Err(error) => {
                self.release(order.id).await;
                Err(error)
            }
        }
    }

    /// The order this customer's key already made, if any.
    async fn earlier(
        &self,
        request: &CheckoutRequest,
        request_hash: &[u8],
    ) -> Result<Option<Placed>, OrderError> {
        match store::by_key(&self.pool, request.customer_id, &request.idempotency_key).await? {
            Some(order) if order.row.request_hash == request_hash => Ok(Some(Placed::Again(order))),
            Some(_) => Err(OrderError::KeyReused),
            None => Ok(None),
        }
    }

    async fn cart(&self, bearer: &str) -> Result<CartBody, OrderError> {
        let response = self
            .http
            .get(format!("{}/carts/me", self.cart_url))
            .bearer_auth(bearer)
            .send()
            .await
            .map_err(|error| unreachable("cart", &error))?;
        match response.status() {
            StatusCode::NOT_FOUND => Err(OrderError::EmptyCart),
            status if status.is_success() => response
                .json()
                .await
                .map_err(|error| unreachable("cart", &error)),
            status => Err(upstream("cart", status, response).await),
        }
    }

    async fn profile(&self, bearer: &str) -> Result<Profile, OrderError> {
        let response = self
            .http
            .get(format!("{}/users/me", self.user_url))
            .bearer_auth(bearer)
            .send()
            .await
            .map_err(|error| unreachable("user", &error))?;
        match response.status() {
            status if status.is_success() => response
                .json()
                .await
                .map_err(|error| unreachable("user", &error)),
            status => Err(upstream("user", status, response).await),
        }
    }

    async fn reserve(&self, order: &NewOrder) -> Result<(), OrderError> {
        let hold = self.payment_grace + self.reservation_margin;
        let body = json!({
            "order_id": order.id,
            "lines": order.lines.iter().map(|line| json!({
                "product_id": line.product_id,
                "quantity": line.quantity,
            })).collect::<Vec<_>>(),
            "hold_seconds": hold.as_secs().min(86_400),
        });
        let url = format!("{}/internal/reservations", self.product_url);
        let response = self.internal_post("product", &url, Some(&body)).await?;
        match response.status() {
            status if status.is_success() => Ok(()),
            StatusCode::CONFLICT => {
                let problem: ShortProblem = response.json().await.unwrap_or_default();
                if problem.short.is_empty() {
                    Err(OrderError::Upstream {
                        service: "product",
                        status: 409,
                        detail: problem.detail,
                    })
                } else {
                    Err(OrderError::Short(problem.short))
                }
            }
            // A product that is gone since it was put in the cart.
            StatusCode::NOT_FOUND | StatusCode::UNPROCESSABLE_ENTITY => {
                let problem: ShortProblem = response.json().await.unwrap_or_default();
                Err(OrderError::Invalid(format!(
                    "the cart cannot be ordered: {}",
                    problem.detail
                )))
            }
            status => Err(upstream("product", status, response).await),
        }
    }

    /// Takes the ordered lines out of the customer's cart now, so that a checkout right after
    /// this one does not order them again. On failure `OrderPlaced` does it a little later.
    async fn take_from_cart(&self, order: &NewOrder) {
        let url = format!(
            "{}/internal/carts/{}/orders",
            self.cart_url, order.customer_id
        );
        let body = serde_json::json!({
            "order_id": order.id,
            "lines": order.lines.iter().map(|line| serde_json::json!({
                "product_id": line.product_id,
                "quantity": line.quantity,
            })).collect::<Vec<_>>(),
        });
        match self.internal_post("cart", &url, Some(&body)).await {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => {
                tracing::warn!(order_id = %order.id, status = %response.status(), "the cart refused to give up the ordered lines; OrderPlaced will take them");
            }
            Err(error) => {
                tracing::warn!(order_id = %order.id, %error, "the cart did not give up the ordered lines; OrderPlaced will take them");
            }
        }
    }

    /// Gives a reservation back. If the product service cannot be reached just now (its
    /// database restarting, say), tries again in the background for about a minute rather
    /// than leave the stock held until the reservation expires.
    async fn release(&self, order_id: Uuid) {
        if self.release_once(order_id).await {
            return;
        }
        let checkout = self.clone();
        tokio::spawn(async move {
            let mut wait = Duration::from_secs(1);
            for _ in 0..6 {
                tokio::time::sleep(wait).await;
                if checkout.release_once(order_id).await {
                    tracing::info!(%order_id, "reservation released on a later try");
                    return;
                }
                wait *= 2;
            }
            tracing::warn!(%order_id, "releasing a reservation kept failing; it will expire");
        });
    }

    /// Whether the reservation is released (or there was none to release).
    async fn release_once(&self, order_id: Uuid) -> bool {
        let url = format!(
            "{}/internal/reservations/{order_id}/release",
            self.product_url
        );
        match self.internal_post("product", &url, None).await {
            Ok(response) if response.status().is_success() => true,
            Ok(response) if response.status() == StatusCode::NOT_FOUND => true,
            Ok(response) => {
                tracing::warn!(%order_id, status = %response.status(), "releasing a reservation was refused");
                !response.status().is_server_error()
            }
            Err(error) => {
                tracing::warn!(%order_id, %error, "releasing a reservation failed");
                false
            }
        }
    }

    /// A POST to another service's internal API with the service token, asking for a new token
    /// once if the current one is refused.
    async fn internal_post(
        &self,
        service: &'static str,
        url: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<reqwest::Response, OrderError> {
        for attempt in 0..2 {
            let token = self.tokens.get().await.map_err(|error| {
                tracing::warn!(%error, "no service token");
                OrderError::Unavailable("user")
            })?;
            let mut request = self.http.post(url).bearer_auth(token);
            if let Some(body) = body {
                request = request.json(body);
            }
            let response = request
                .send()
                .await
                .map_err(|error| unreachable(service, &error))?;
            if response.status() == StatusCode::UNAUTHORIZED && attempt == 0 {
                self.tokens.forget().await;
                continue;
            }
            return Ok(response);
        }
        Err(OrderError::Unavailable(service))
    }
}

fn unreachable(service: &'static str, error: &reqwest::Error) -> OrderError {
    tracing::warn!(service, %error, "a service did not answer");
    OrderError::Unavailable(service)
}

/// An answer that is not ours to explain: a 5xx means the service is down for now.
async fn upstream(
    service: &'static str,
    status: StatusCode,
    response: reqwest::Response,
) -> OrderError {
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        tracing::warn!(service, %status, "a service is unavailable");
        return OrderError::Unavailable(service);
    }
    let detail = response.text().await.unwrap_or_default();
    OrderError::Upstream {
        service,
        status: status.as_u16(),
        detail,
    }
}
