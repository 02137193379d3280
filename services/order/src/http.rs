//! `/orders`: checkout, the caller's orders (all of them for an admin), and the commands people
//! give an order. Reads come from the stored rows; every change goes through the order's actor.

use chrono::{DateTime, Utc};
use poem::Request;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use shop_web::{ApiError, BearerAuth, Caller};
use sqlx::PgPool;
use uuid::Uuid;

use crate::actor::{OrderMsg, Request as OrderRequest};
use crate::checkout::{Checkout, CheckoutRequest, Placed};
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
    /// Minor units of `currency`.
    total: i64,
    lines: Vec<OrderLineBody>,
    /// The payment method reference given at checkout.
    payment_method: String,
    /// The Idempotency-Key of the checkout that placed it.
    idempotency_key: String,
    payment_id: Option<Uuid>,
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
        Self {
            id: row.id,
            customer_id: row.customer_id,
            customer_email: row.customer_email,
            customer_name: row.customer_name,
            state,
            currency: row.currency,
            total: row.total,
            lines: order
                .lines
                .into_iter()
                .map(|line| OrderLineBody {
                    line_total: line.unit_price * i64::from(line.quantity),
                    product_id: line.product_id,
                    name: line.name,
                    quantity: line.quantity,
                    unit_price: line.unit_price,
                })
                .collect(),
            payment_method: row.payment_method,
            idempotency_key: row.idempotency_key,
            payment_id: row.payment_id,
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

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct CheckoutBody {
    /// A payment method reference, e.g. `pm_card_visa`.
    payment_method: String,
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
    /// Check out the caller's cart: reserves stock for every line and places a pending order.
    /// An empty cart is 422, a short line 409 naming the products; the same Idempotency-Key and
    /// body answers the same order again, with another body 422.
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
        let bearer = request
            .headers()
            .get(poem::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .ok_or_else(|| ApiError::unauthorized("a bearer token is required"))?
            .to_owned();
        let placed = self
            .checkout
            .place(CheckoutRequest {
                customer_id,
                bearer,
                idempotency_key,
                payment_method: body.0.payment_method,
                trace_id: Some(shop_web::request_id::current()),
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
    #[oai(path = "/", method = "get", operation_id = "list_orders")]
    async fn list(
        &self,
        auth: BearerAuth,
        state: Query<Option<OrderState>>,
        /// Admins only: one customer's orders.
        customer_id: Query<Option<Uuid>>,
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
        let filter = Filter {
            customer_id,
            state: state.0.map(Into::into),
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

    /// Record that a paid order left the warehouse (admin).
    #[oai(path = "/:id/ship", method = "post", operation_id = "ship_order")]
    async fn ship(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
        /// The carrier's tracking number, if there is one (at most 100 characters).
        tracking_number: Query<Option<String>>,
    ) -> Result<Json<OrderBody>, ApiError> {
        auth.0.require_admin()?;
        if tracking_number
            .0
            .as_ref()
            .is_some_and(|number| number.trim().is_empty() || number.chars().count() > 100)
        {
            return Err(ApiError::unprocessable(
                "tracking_number must be 1 to 100 characters",
            ));
        }
        self.command(&auth.0, id.0, Command::Ship, None, tracking_number.0)
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
        tracking_number: Option<String>,
    ) -> Result<Json<OrderBody>, ApiError> {
        let by = caller.0.sub.clone();
        let reason = reason.map(str::to_owned);
        let trace_id = Some(shop_web::request_id::current());
        let answer = self
            .orders
            .call(id, |reply| {
                let request = OrderRequest {
                    command,
                    by: by.clone(),
                    reason: reason.clone(),
                    tracking_number: tracking_number.clone(),
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
