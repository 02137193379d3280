//! Checkout: the customer's cart becomes a pending order with its stock reserved, or nothing
//! happens at all.
//!
//! 1. The same `Idempotency-Key` again answers the order it made (another body: 422).
//! 2. Read the cart and the customer's name and email, with the customer's own token; the
//!    address (from the customer's address book, or given), the shipping method's rate for its
//!    country and the country's tax rate.
//! 3. Reserve every line at the product service (service token): all or nothing, and only at
//!    the prices the cart holds — a price that changed is a 409 `price_changed`, nothing is
//!    reserved, and the cart takes the new prices.
//! 4. Price the order (`pricing.rs`: the quote's numbers) and store it as `pending`, with a copy
//!    of the address and `OrderPlaced` in its outbox, in one transaction.
//!
//! A failure after step 3 releases the reservation, so there is never a reservation without an
//! order; the reservation also expires by itself, should the release be lost too.

use shop_telemetry::Traced;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use shop_config::{ShippingRate, ShippingTable, TaxTable};
use shop_schemas::ShippingAddress;
use shop_web::{Address, ServiceTokens};
use sqlx::PgPool;
use uuid::Uuid;

use crate::actor::OrderMsg;
use crate::error::{OrderError, PriceChange, Shortage};
use crate::orders::Orders;
use crate::pricing::{self, Line, Priced};
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
    pub rules: Arc<Rules>,
    /// Refuse checkout (403) to a customer whose email is not verified.
    pub require_verified_email: bool,
}

/// The shop's commercial rules, from the settings.
pub struct Rules {
    pub shipping: ShippingTable,
    pub tax: TaxTable,
    pub prices_include_tax: bool,
}

/// Where to ship: an address from the customer's address book, or one given with the request.
#[derive(Debug, Clone)]
pub enum Destination {
    Saved(Uuid),
    Given(Address),
}

/// How and where an order ships.
#[derive(Debug, Clone)]
pub struct ShippingChoice {
    pub method: String,
    pub destination: Destination,
}

pub struct CheckoutRequest {
    pub customer_id: Uuid,
    /// The customer's own access token, to read their cart, profile and address book.
    pub bearer: String,
    pub idempotency_key: String,
    pub payment_method: String,
    pub shipping: ShippingChoice,
    pub trace_id: Option<String>,
}

/// What an order of the cart would cost, shipped so: the numbers checkout charges.
pub struct Quote {
    pub currency: String,
    pub priced: Priced,
    pub method_code: String,
    pub method_name: String,
    pub min_days: u32,
    pub max_days: u32,
    pub address: ShippingAddress,
    /// Lines whose price changed since they entered the cart (checkout would answer 409 once,
    /// and the cart take the new prices).
    pub price_changes: Vec<PriceChange>,
}

/// What checkout and the quote both need before the prices.
struct Prepared {
    cart: CartBody,
    currency: String,
    address: ShippingAddress,
    method_code: String,
    method_name: String,
    rate: ShippingRate,
    tax_rate: u32,
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
    /// Absent from a user service older than verification: taken as verified.
    #[serde(default = "verified")]
    email_verified: bool,
}

fn verified() -> bool {
    true
}

#[derive(Deserialize, Default)]
struct ShortProblem {
    #[serde(default)]
    short: Vec<Shortage>,
    #[serde(default)]
    price_changed: Vec<ProductPriceChange>,
    #[serde(default)]
    detail: String,
}

/// The product service's word for a price that changed.
#[derive(Deserialize)]
struct ProductPriceChange {
    product_id: Uuid,
    expected: i64,
    current: i64,
}

/// What the product service says a product costs now.
#[derive(Deserialize)]
struct CurrentPrice {
    product_id: Uuid,
    name: String,
    price: i64,
    sold: bool,
}

#[derive(Deserialize)]
struct CurrentPrices {
    items: Vec<CurrentPrice>,
}

/// What makes two checkouts with one Idempotency-Key the same request.
fn request_hash(request: &CheckoutRequest) -> Vec<u8> {
    let mut hash = Sha256::new();
    hash.update(request.payment_method.as_bytes());
    hash.update([0]);
    hash.update(request.shipping.method.as_bytes());
    hash.update([0]);
    match &request.shipping.destination {
        Destination::Saved(id) => hash.update(id.as_bytes()),
        Destination::Given(address) => {
            hash.update(serde_json::to_vec(address).unwrap_or_default());
        }
    }
    hash.finalize().to_vec()
}

fn visible_ascii(text: &str) -> bool {
    !text.is_empty() && text.len() <= MAX_KEY && text.bytes().all(|b| b.is_ascii_graphic())
}

impl Checkout {
    /// What checking out the cart would cost, shipped so: lines at the products' current
    /// prices, shipping and tax, computed as checkout computes them.
    pub async fn quote(
        &self,
        bearer: &str,
        shipping: &ShippingChoice,
    ) -> Result<Quote, OrderError> {
        let prepared = self.prepare(bearer, shipping).await?;
        let current = self.current_prices(&prepared.cart).await?;
        let mut price_changes = Vec::new();
        let mut lines = Vec::new();
        for item in &prepared.cart.items {
            let Some(now) = current
                .iter()
                .find(|price| price.product_id == item.product_id)
            else {
                return Err(OrderError::Invalid(format!(
                    "the cart cannot be ordered: no such product: {}",
                    item.product_id
                )));
            };
            if !now.sold {
                return Err(OrderError::Invalid(format!(
                    "the cart cannot be ordered: no longer sold (archived): {}",
                    item.product_id
                )));
            }
            if now.price != item.unit_price {
                price_changes.push(PriceChange {
                    product_id: item.product_id,
                    old_price: item.unit_price,
                    new_price: now.price,
                });
            }
            lines.push(Line {
                product_id: item.product_id,
                name: now.name.clone(),
                quantity: item.quantity,
                unit_price: now.price,
            });
        }
        let priced = pricing::price(
            lines,
            prepared.rate,
            prepared.tax_rate,
            self.rules.prices_include_tax,
        );
        Ok(Quote {
            currency: prepared.currency,
            priced,
            method_code: prepared.method_code,
            method_name: prepared.method_name,
            min_days: prepared.rate.min_days,
            max_days: prepared.rate.max_days,
            address: prepared.address,
            price_changes,
        })
    }

    /// A span of its own, named by the order it makes: the observer finds an order's trace by
    /// its `order.id`.
    #[tracing::instrument(name = "checkout", skip_all, fields(order.id = tracing::field::Empty, customer.id = %request.customer_id))]
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
        let request_hash = request_hash(&request);
        if let Some(placed) = self.earlier(&request, &request_hash).await? {
            return Ok(placed);
        }

        let (prepared, profile) = tokio::try_join!(
            self.prepare(&request.bearer, &request.shipping),
            self.profile(&request.bearer)
        )?;
        if self.require_verified_email && !profile.email_verified {
            return Err(OrderError::EmailNotVerified);
        }
        let lines: Vec<Line> = prepared
            .cart
            .items
            .iter()
            .map(|item| Line {
                product_id: item.product_id,
                name: item.name.clone(),
                quantity: item.quantity,
                unit_price: item.unit_price,
            })
            .collect();
        // At the cart's prices: the reservation below refuses any that is not current.
        let priced = pricing::price(
            lines,
            prepared.rate,
            prepared.tax_rate,
            self.rules.prices_include_tax,
        );
        let order = NewOrder {
            id: Uuid::now_v7(),
            customer_id: request.customer_id,
            customer_name: profile.name.unwrap_or_else(|| profile.email.clone()),
            customer_email: profile.email,
            currency: prepared.currency,
            lines: priced
                .lines
                .iter()
                .map(|line| LineRow {
                    product_id: line.product_id,
                    name: line.name.clone(),
                    quantity: line.quantity,
                    unit_price: line.unit_price,
                    tax: Some(line.tax),
                })
                .collect(),
            subtotal: priced.subtotal,
            shipping: priced.shipping,
            tax: priced.tax,
            total: priced.total,
            prices_include_tax: priced.prices_include_tax,
            shipping_method: prepared.method_code,
            delivery_min_days: i32::try_from(prepared.rate.min_days).unwrap_or(i32::MAX),
            delivery_max_days: i32::try_from(prepared.rate.max_days).unwrap_or(i32::MAX),
            address: prepared.address,
            payment_method: request.payment_method.clone(),
            idempotency_key: request.idempotency_key.clone(),
            request_hash: request_hash.clone(),
            pay_by: Utc::now() + chrono::Duration::from_std(self.payment_grace).unwrap_or_default(),
        };

        tracing::Span::current().record("order.id", tracing::field::display(order.id));
        if let Err(error) = self.reserve(&order).await {
            if let OrderError::PriceChanged(changes) = &error {
                self.take_new_prices(order.customer_id, changes).await;
            }
            // A twin request with the same key may have taken the stock, and made the order.
            return match self.earlier(&request, &request_hash).await? {
                Some(placed) => Ok(placed),
                None => Err(error),
            };
        }
        let stored = store::insert(&self.pool, &order, request.trace_id.as_deref()).await;
        match stored {
            Ok(Some(placed)) => {
                // Its actor arms the payment timer, while the cart gives up the ordered lines.
                let (_, started) = tokio::join!(
                    self.take_from_cart(&order),
                    self.orders
                        .send(order.id, OrderMsg::Placed(Box::new(placed.clone())))
                );
                if let Err(error) = started {
                    tracing::warn!(order_id = %order.id, %error, "the order's actor did not start; the sweeper will expire it if unpaid");
                }
                tracing::info!(order_id = %order.id, customer_id = %order.customer_id, total = order.total, "order placed");
                Ok(Placed::New(placed))
            }
            Ok(None) => {
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

    /// The cart, the address, the shipping method's rate and the tax rate for a checkout or a
    /// quote.
    async fn prepare(
        &self,
        bearer: &str,
        shipping: &ShippingChoice,
    ) -> Result<Prepared, OrderError> {
        let address = match &shipping.destination {
            Destination::Saved(id) => self.saved_address(bearer, *id).await?,
            Destination::Given(address) => address.clone().checked()?,
        };
        let country = address.country.clone();
        let (method, rate) = self
            .rules
            .shipping
            .rate(&shipping.method, &country)
            .ok_or_else(|| OrderError::UnknownMethod {
                method: shipping.method.clone(),
                country: country.clone(),
            })?;
        let (method_code, method_name) = (method.code.clone(), method.name.clone());
        let tax_rate = self
            .rules
            .tax
            .rate(&country)
            .ok_or_else(|| OrderError::NotSoldTo(country.clone()))?;
        let cart = self.cart(bearer).await?;
        let currency = match (&cart.currency, cart.items.is_empty()) {
            (Some(currency), false) => currency.clone(),
            _ => return Err(OrderError::EmptyCart),
        };
        if !currency.eq_ignore_ascii_case(&self.rules.shipping.currency) {
            return Err(OrderError::Invalid(format!(
                "the cart is in {currency}, shipping is priced in {}",
                self.rules.shipping.currency
            )));
        }
        Ok(Prepared {
            cart,
            currency,
            address: ShippingAddress {
                name: address.name,
                line1: address.line1,
                line2: address.line2,
                city: address.city,
                region: address.region,
                postal_code: address.postal_code,
                country: address.country,
                phone: address.phone,
            },
            method_code,
            method_name,
            rate,
            tax_rate,
        })
    }

    /// One of the customer's saved addresses, read with their own token: another customer's
    /// is not found.
    async fn saved_address(&self, bearer: &str, id: Uuid) -> Result<Address, OrderError> {
        let response = self
            .http
            .get(format!("{}/users/me/addresses/{id}", self.user_url))
            .bearer_auth(bearer)
            .traced()
            .send()
            .await
            .map_err(|error| unreachable("user", &error))?;
        match response.status() {
            StatusCode::NOT_FOUND => Err(OrderError::AddressNotFound),
            status if status.is_success() => response
                .json()
                .await
                .map_err(|error| unreachable("user", &error)),
            status => Err(upstream("user", status, response).await),
        }
    }

    /// What the cart's products cost now (internal API, service token).
    async fn current_prices(&self, cart: &CartBody) -> Result<Vec<CurrentPrice>, OrderError> {
        let url = format!("{}/internal/prices", self.product_url);
        let body = json!({
            "product_ids": cart.items.iter().map(|item| item.product_id).collect::<Vec<_>>(),
        });
        let response = self.internal_post("product", &url, Some(&body)).await?;
        match response.status() {
            status if status.is_success() => response
                .json::<CurrentPrices>()
                .await
                .map(|prices| prices.items)
                .map_err(|error| unreachable("product", &error)),
            status => Err(upstream("product", status, response).await),
        }
    }

    /// Gives the cart the prices checkout found changed, so the customer sees them and the next
    /// checkout charges them (the `ProductPriceChanged` event would, a moment later).
    async fn take_new_prices(&self, customer_id: Uuid, changes: &[PriceChange]) {
        let url = format!("{}/internal/carts/{customer_id}/prices", self.cart_url);
        let body = json!({
            "lines": changes.iter().map(|change| json!({
                "product_id": change.product_id,
                "unit_price": change.new_price,
            })).collect::<Vec<_>>(),
        });
        match self.internal_post("cart", &url, Some(&body)).await {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => {
                tracing::warn!(%customer_id, status = %response.status(), "the cart refused the new prices; ProductPriceChanged will bring them");
            }
            Err(error) => {
                tracing::warn!(%customer_id, %error, "the cart did not take the new prices; ProductPriceChanged will bring them");
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
            .traced()
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
            .traced()
            .send()
            .await
            .map_err(|error| unreachable("user", &error))?;
        match response.status() {
            status if status.is_success() => response
                .json()
                .await
                .map_err(|error| unreachable("user", &error)),
            // A token still valid for an account deleted since.
            StatusCode::NOT_FOUND => Err(OrderError::AccountGone),
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
                "unit_price": line.unit_price,
            })).collect::<Vec<_>>(),
            "hold_seconds": hold.as_secs().min(86_400),
        });
        let url = format!("{}/internal/reservations", self.product_url);
        let response = self.internal_post("product", &url, Some(&body)).await?;
        match response.status() {
            status if status.is_success() => Ok(()),
            StatusCode::CONFLICT => {
                let problem: ShortProblem = response.json().await.unwrap_or_default();
                if !problem.price_changed.is_empty() {
                    return Err(OrderError::PriceChanged(
                        problem
                            .price_changed
                            .into_iter()
                            .map(|change| PriceChange {
                                product_id: change.product_id,
                                old_price: change.expected,
                                new_price: change.current,
                            })
                            .collect(),
                    ));
                }
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
                .traced()
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
