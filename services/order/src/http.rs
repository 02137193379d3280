//! `/orders`: checkout, the caller's orders (all of them for an admin), and the commands people
//! give an order. Reads come from the stored rows; every change goes through the order's actor.

use chrono::{DateTime, Utc};
use poem::Request;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use shop_web::{Address, ApiError, BearerAuth, Caller};
use sqlx::PgPool;
use uuid::Uuid;

use crate::actor::{OrderMsg, Request as OrderRequest};
use crate::checkout::{Checkout, CheckoutRequest, Destination, Placed, Quote, ShippingChoice};
use crate::error::OrderError;
use crate::orders::Orders;
use crate::state::{Command, State};
use crate::store::{self, Filter, HistoryRow, Order};

pub struct OrdersApi {
    pub pool: PgPool,
    pub orders: Orders,
    pub checkout: Checkout,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
enum OrderState {
    Pending,
    Paid,
    Shipped,
    Delivered,
    Cancelled,
    Refunded,
}

impl From<State> for OrderState {
    fn from(state: State) -> Self {
        match state {
            State::Pending => OrderState::Pending,
            State::Paid => OrderState::Paid,
            State::Shipped => OrderState::Shipped,
            State::Delivered => OrderState::Delivered,
            State::Cancelled => OrderState::Cancelled,
            State::Refunded => OrderState::Refunded,
        }
    }
}

impl From<OrderState> for State {
    fn from(state: OrderState) -> Self {
        match state {
            OrderState::Pending => State::Pending,
            OrderState::Paid => State::Paid,
            OrderState::Shipped => State::Shipped,
            OrderState::Delivered => State::Delivered,
            OrderState::Cancelled => State::Cancelled,
            OrderState::Refunded => State::Refunded,
        }
    }
}

#[derive(Debug, Object)]
struct OrderLineBody {
    product_id: Uuid,
    /// The product's name when it was ordered.
    name: String,
    quantity: i32,
    /// Minor units of the order's currency.
    unit_price: i64,
    line_total: i64,
    /// The tax in this line (included in `line_total` when prices include tax); absent for
    /// orders placed before tax.
    #[oai(skip_serializing_if_is_none)]
    tax: Option<i64>,
}

/// How the order ships.
#[derive(Debug, Object)]
struct ShippingBody {
    /// The method's code, e.g. `standard`.
    method: String,
    /// Minor units.
    cost: i64,
    /// Working days from dispatch.
    min_days: i32,
    max_days: i32,
    /// A copy of the address at checkout: later edits to the address book do not change it.
    address: Address,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
struct HistoryEntry {
    /// Null for the first entry (the order was placed).
    from: Option<OrderState>,
    to: OrderState,
    /// A user id, `payment`, or `system` (the payment timer).
    by: String,
    reason: Option<String>,
    at: DateTime<Utc>,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
struct OrderBody {
    id: Uuid,
    customer_id: Uuid,
    customer_email: String,
    customer_name: String,
    state: OrderState,
    /// ISO 4217.
    currency: String,
    /// What is charged, in minor units of `currency`: `subtotal` plus shipping, plus `tax`
    /// where prices do not include it.
    total: i64,
    /// The goods (absent for orders placed before shipping and tax).
    subtotal: Option<i64>,
    /// All tax, lines and shipping.
    tax: Option<i64>,
    prices_include_tax: Option<bool>,
    shipping: Option<ShippingBody>,
    lines: Vec<OrderLineBody>,
    /// The payment method reference given at checkout.
    payment_method: String,
    /// The Idempotency-Key of the checkout that placed it.
    idempotency_key: String,
    payment_id: Option<Uuid>,
    carrier: Option<String>,
    tracking_number: Option<String>,
    cancel_reason: Option<String>,
    /// A pending order not paid by then is cancelled.
    pay_by: DateTime<Utc>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// Every state the order went through (on single-order answers only).
    #[oai(skip_serializing_if_is_none)]
    history: Option<Vec<HistoryEntry>>,
}

impl OrderBody {
    fn new(order: Order, history: Option<Vec<HistoryRow>>) -> Self {
        let row = order.row;
        let state = row.state().into();
        let shipping = match (row.shipping_address(), &row.shipping_method, row.shipping) {
            (Some(address), Some(method), Some(cost)) => Some(ShippingBody {
                method: method.clone(),
                cost,
                min_days: row.delivery_min_days.unwrap_or_default(),
                max_days: row.delivery_max_days.unwrap_or_default(),
                address: Address {
                    name: address.name,
                    line1: address.line1,
                    line2: address.line2,
                    city: address.city,
                    region: address.region,
                    postal_code: address.postal_code,
                    country: address.country,
                    phone: address.phone,
                },
            }),
            _ => None,
        };
        Self {
            id: row.id,
            customer_id: row.customer_id,
            customer_email: row.customer_email,
            customer_name: row.customer_name,
            state,
            currency: row.currency,
            total: row.total,
            subtotal: row.subtotal,
            tax: row.tax,
            prices_include_tax: row.prices_include_tax,
            shipping,
            lines: order
                .lines
                .into_iter()
                .map(|line| OrderLineBody {
                    line_total: line.unit_price * i64::from(line.quantity),
                    product_id: line.product_id,
                    name: line.name,
                    quantity: line.quantity,
                    unit_price: line.unit_price,
                    tax: line.tax,
                })
                .collect(),
            payment_method: row.payment_method,
            idempotency_key: row.idempotency_key,
            payment_id: row.payment_id,
            carrier: row.carrier,
            tracking_number: row.tracking_number,
            cancel_reason: row.cancel_reason,
            pay_by: row.pay_by,
            created_at: row.created_at,
            updated_at: row.updated_at,
            history: history.map(|rows| {
                rows.into_iter()
                    .map(|entry| HistoryEntry {
                        from: entry
                            .from_state
                            .as_deref()
                            .and_then(State::parse)
                            .map(Into::into),
                        to: State::parse(&entry.to_state)
                            .unwrap_or(State::Pending)
                            .into(),
                        by: entry.actor,
                        reason: entry.reason,
                        at: entry.at,
                    })
                    .collect()
            }),
        }
    }
}

#[derive(Debug, Object)]
struct OrderPage {
    items: Vec<OrderBody>,
    page: u32,
    per_page: u32,
    /// Orders matching the filters, on all pages.
    total: i64,
}

/// Where and how to ship: a saved address (`address_id`) or one given here (`address`), and
/// a shipping method that ships to its country.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct ShippingRequest {
    /// One of the caller's saved addresses (`GET /users/me/addresses`).
    address_id: Option<Uuid>,
    /// An address given for this order only.
    address: Option<Address>,
    /// A shipping method's code, e.g. `standard` or `express`.
    shipping_method: String,
}

impl ShippingRequest {
    fn choice(self) -> Result<ShippingChoice, ApiError> {
        let destination = match (self.address_id, self.address) {
            (Some(id), None) => Destination::Saved(id),
            (None, Some(address)) => Destination::Given(address),
            _ => {
                return Err(ApiError::unprocessable(
                    "address: give exactly one of address_id and address",
                )
                .with("field", "address"));
            }
        };
        Ok(ShippingChoice {
            method: self.shipping_method,
            destination,
        })
    }
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct CheckoutBody {
    /// A payment method reference, e.g. `pm_card_visa`.
    payment_method: String,
    /// One of the caller's saved addresses.
    address_id: Option<Uuid>,
    /// An address given for this order only.
    address: Option<Address>,
    /// A shipping method's code, e.g. `standard` or `express`.
    shipping_method: String,
}

/// A line of a quote, at the product's current price.
#[derive(Debug, Object)]
struct QuoteLine {
    product_id: Uuid,
    name: String,
    quantity: i32,
    unit_price: i64,
    line_total: i64,
    tax: i64,
}

/// A line whose price changed since it entered the cart.
#[derive(Debug, Object)]
struct QuotePriceChange {
    product_id: Uuid,
    /// What the cart holds.
    old_price: i64,
    /// What it costs now, and what checkout charges.
    new_price: i64,
}

#[derive(Debug, Object)]
struct QuoteShipping {
    method: String,
    /// The method's name, e.g. `Express`.
    name: String,
    cost: i64,
    min_days: u32,
    max_days: u32,
}

/// What checking out the cart would charge, to the minor unit.
#[derive(Debug, Object)]
struct QuoteBody {
    currency: String,
    lines: Vec<QuoteLine>,
    subtotal: i64,
    shipping: QuoteShipping,
    /// All tax: the lines' and shipping's.
    tax: i64,
    /// Hundredths of a percent: 1900 is 19%.
    tax_rate: u32,
    /// Whether the prices include the tax (then `total` is `subtotal + shipping`), or it is
    /// added (`subtotal + shipping + tax`).
    prices_include_tax: bool,
    total: i64,
    address: Address,
    /// Lines whose price changed since they entered the cart: checkout answers 409 once for
    /// them (and the cart takes the new prices).
    price_changes: Vec<QuotePriceChange>,
}

impl From<Quote> for QuoteBody {
    fn from(quote: Quote) -> Self {
        let priced = quote.priced;
        Self {
            currency: quote.currency,
            lines: priced
                .lines
                .into_iter()
                .map(|line| QuoteLine {
                    product_id: line.product_id,
                    name: line.name,
                    quantity: line.quantity,
                    unit_price: line.unit_price,
                    line_total: line.total,
                    tax: line.tax,
                })
                .collect(),
            subtotal: priced.subtotal,
            shipping: QuoteShipping {
                method: quote.method_code,
                name: quote.method_name,
                cost: priced.shipping,
                min_days: quote.min_days,
                max_days: quote.max_days,
            },
            tax: priced.tax,
            tax_rate: priced.tax_rate,
            prices_include_tax: priced.prices_include_tax,
            total: priced.total,
            address: Address {
                name: quote.address.name,
                line1: quote.address.line1,
                line2: quote.address.line2,
                city: quote.address.city,
                region: quote.address.region,
                postal_code: quote.address.postal_code,
                country: quote.address.country,
                phone: quote.address.phone,
            },
            price_changes: quote
                .price_changes
                .into_iter()
                .map(|change| QuotePriceChange {
                    product_id: change.product_id,
                    old_price: change.old_price,
                    new_price: change.new_price,
                })
                .collect(),
        }
    }
}

/// The caller's own bearer token, to read their cart and address book with.
fn bearer_of(request: &Request) -> Result<String, ApiError> {
    request
        .headers()
        .get(poem::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::to_owned)
        .ok_or_else(|| ApiError::unauthorized("a bearer token is required"))
}

#[derive(ApiResponse)]
enum CheckoutAnswer {
    /// The order is placed and its stock reserved; it waits for payment.
    #[oai(status = 201)]
    Created(Json<OrderBody>, #[oai(header = "Location")] String),
    /// An earlier request with this Idempotency-Key placed this order.
    #[oai(status = 200)]
    Replayed(
        Json<OrderBody>,
        #[oai(header = "Location")] String,
        #[oai(header = "Idempotent-Replayed")] String,
    ),
}

#[OpenApi(prefix_path = "/orders", tag = "OrderTag::Orders")]
impl OrdersApi {
    /// What checking out the caller's cart would charge, shipped to an address (saved or
    /// given) by a method: lines at current prices, shipping, tax, total, delivery estimate.
    #[oai(path = "/quote", method = "post", operation_id = "quote")]
    async fn quote(
        &self,
        request: &Request,
        _auth: BearerAuth,
        body: Json<ShippingRequest>,
    ) -> Result<Json<QuoteBody>, ApiError> {
        let bearer = bearer_of(request)?;
        let choice = body.0.choice()?;
        let quote = self.checkout.quote(&bearer, &choice).await?;
        Ok(Json(quote.into()))
    }

    /// Check out the caller's cart, shipped to an address (saved: `address_id`, or given:
    /// `address`) by a method: reserves stock for every line at the prices the cart holds and
    /// places a pending order with a copy of the address, shipping and tax. An empty cart is
    /// 422, a short line 409 naming the products, a price changed since it entered the cart 409
    /// `price_changed` with old and new prices (nothing reserved; the cart takes the new
    /// prices), a method that does not ship to the country 422, another customer's address 404;
    /// the same Idempotency-Key and body answers the same order again, with another body 422.
    #[oai(path = "/", method = "post", operation_id = "checkout")]
    async fn checkout(
        &self,
        request: &Request,
        auth: BearerAuth,
        /// Makes retrying safe: one order per key and customer.
        #[oai(name = "Idempotency-Key")]
        idempotency_key: Header<Option<String>>,
        body: Json<CheckoutBody>,
    ) -> Result<CheckoutAnswer, ApiError> {
        let customer_id = auth.0.user_id()?;
        let idempotency_key = idempotency_key
            .0
            .ok_or_else(|| ApiError::bad_request("the Idempotency-Key header is required"))?;
        let bearer = bearer_of(request)?;
        let body = body.0;
        let shipping = ShippingRequest {
            address_id: body.address_id,
            address: body.address,
            shipping_method: body.shipping_method,
        }
        .choice()?;
        let placed = self
            .checkout
            .place(CheckoutRequest {
                customer_id,
                bearer,
                idempotency_key,
                payment_method: body.payment_method,
                shipping,
                trace_id: Some(shop_web::request_id::trace_context()),
            })
            .await?;
        Ok(match placed {
            Placed::New(order) => {
                let location = format!("/orders/{}", order.row.id);
                CheckoutAnswer::Created(Json(OrderBody::new(order, None)), location)
            }
            Placed::Again(order) => {
                let location = format!("/orders/{}", order.row.id);
                CheckoutAnswer::Replayed(
                    Json(OrderBody::new(order, None)),
                    location,
                    "true".to_owned(),
                )
            }
        })
    }

    /// The caller's orders, newest first; an admin sees everyone's and may filter by customer.
    /// Filter by state, and by the country they ship to.
    #[oai(path = "/", method = "get", operation_id = "list_orders")]
    async fn list(
        &self,
        auth: BearerAuth,
        state: Query<Option<OrderState>>,
        /// Admins only: one customer's orders.
        customer_id: Query<Option<Uuid>>,
        /// ISO 3166-1 alpha-2 of the address they ship to.
        country: Query<Option<String>>,
        /// From 1.
        page: Query<Option<u32>>,
        /// 1 to 100, default 20.
        per_page: Query<Option<u32>>,
    ) -> Result<Json<OrderPage>, ApiError> {
        let customer_id = if auth.0.is_admin() {
            customer_id.0
        } else {
            match customer_id.0 {
                Some(other) if other != auth.0.user_id()? => {
                    return Err(ApiError::forbidden("customers see only their own orders"));
                }
                _ => Some(auth.0.user_id()?),
            }
        };
        let paging = shop_web::Paging::new(page.0, per_page.0)?;
        let country = match country.0.map(|country| country.trim().to_ascii_uppercase()) {
            Some(country) if !shop_config::commerce::known_country(&country) => {
                return Err(ApiError::unprocessable(format!(
                    "country: {country:?} is not an ISO 3166-1 alpha-2 country code"
                ))
                .with("field", "country"));
            }
            country => country,
        };
        let filter = Filter {
            customer_id,
            state: state.0.map(Into::into),
            country,
            page: paging.page,
            per_page: paging.per_page,
        };
        let (orders, total) = store::list(&self.pool, &filter).await?;
        Ok(Json(OrderPage {
            items: orders
                .into_iter()
                .map(|order| OrderBody::new(order, None))
                .collect(),
            page: filter.page,
            per_page: filter.per_page,
            total,
        }))
    }

    /// One order with its lines and history (its customer or an admin).
    #[oai(path = "/:id", method = "get", operation_id = "get_order")]
    async fn get(&self, auth: BearerAuth, id: Path<Uuid>) -> Result<Json<OrderBody>, ApiError> {
        let order = self.visible(&auth.0, id.0).await?;
        let history = store::history(&self.pool, id.0).await?;
        Ok(Json(OrderBody::new(order, Some(history))))
    }

    /// Cancel an order before it ships (its customer or an admin). A paid order is refunded.
    #[oai(path = "/:id/cancel", method = "post", operation_id = "cancel_order")]
    async fn cancel(&self, auth: BearerAuth, id: Path<Uuid>) -> Result<Json<OrderBody>, ApiError> {
        let order = self.visible(&auth.0, id.0).await?;
        let reason = if order.row.customer_id.to_string() == auth.0.0.sub {
            "cancelled by the customer"
        } else {
            "cancelled by an admin"
        };
        self.command(&auth.0, id.0, Command::Cancel, Some(reason), None)
            .await
    }

    /// Record that a paid order left the warehouse (admin), with its carrier and tracking
    /// number.
    #[oai(path = "/:id/ship", method = "post", operation_id = "ship_order")]
    async fn ship(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
        /// Who carries it, e.g. `DHL` (1 to 100 characters).
        carrier: Query<Option<String>>,
        /// The carrier's tracking number (1 to 100 characters).
        tracking_number: Query<Option<String>>,
    ) -> Result<Json<OrderBody>, ApiError> {
        auth.0.require_admin()?;
        let shipment = Shipment {
            carrier: required("carrier", carrier.0)?,
            tracking_number: required("tracking_number", tracking_number.0)?,
        };
        self.command(&auth.0, id.0, Command::Ship, None, Some(shipment))
            .await
    }

    /// Record that a shipped order arrived (admin).
    #[oai(path = "/:id/deliver", method = "post", operation_id = "deliver_order")]
    async fn deliver(&self, auth: BearerAuth, id: Path<Uuid>) -> Result<Json<OrderBody>, ApiError> {
        auth.0.require_admin()?;
        self.command(&auth.0, id.0, Command::Deliver, None, None)
            .await
    }
}

/// Who carries a shipped order, and its tracking number.
struct Shipment {
    carrier: String,
    tracking_number: String,
}

/// A required text of 1 to 100 characters, or a 422 naming it.
fn required(field: &'static str, value: Option<String>) -> Result<String, ApiError> {
    shop_web::text::line(value.as_deref().unwrap_or_default(), 100)
        .map_err(|why| ApiError::unprocessable(format!("{field}: {why}")).with("field", field))
}

impl OrdersApi {
    /// The order, if the caller may see it: another customer's order is "not found".
    async fn visible(&self, caller: &Caller, id: Uuid) -> Result<Order, ApiError> {
        let order = store::order(&self.pool, id)
            .await?
            .ok_or(OrderError::NotFound)?;
        if caller.is_admin() || order.row.customer_id == caller.user_id()? {
            Ok(order)
        } else {
            Err(OrderError::NotFound.into())
        }
    }

    async fn command(
        &self,
        caller: &Caller,
        id: Uuid,
        command: Command,
        reason: Option<&str>,
        shipment: Option<Shipment>,
    ) -> Result<Json<OrderBody>, ApiError> {
        let by = caller.0.sub.clone();
        let reason = reason.map(str::to_owned);
        let trace_id = Some(shop_web::request_id::trace_context());
        let (carrier, tracking_number) = match shipment {
            Some(shipment) => (Some(shipment.carrier), Some(shipment.tracking_number)),
            None => (None, None),
        };
        let answer = self
            .orders
            .call(id, |reply| {
                let request = OrderRequest {
                    command,
                    by: by.clone(),
                    reason: reason.clone(),
                    tracking_number: tracking_number.clone(),
                    carrier: carrier.clone(),
                    trace_id: trace_id.clone(),
                };
                OrderMsg::Command(request, reply)
            })
            .await
            .map_err(|_| OrderError::Busy)?;
        let order = answer?;
        let history = store::history(&self.pool, id).await?;
        Ok(Json(OrderBody::new(order, Some(history))))
    }
}

#[derive(poem_openapi::Tags)]
enum OrderTag {
    /// Checkout and orders
    Orders,
}
