//! What can go wrong in the order service, and the problem each answers with.

use shop_web::{ApiError, ProblemKind};
use uuid::Uuid;

use crate::state::{Command, State};

/// A product the customer asked for more of than can be had.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Shortage {
    pub product_id: Uuid,
    pub requested: i32,
    pub available: i32,
}

/// A line whose price changed since it entered the cart.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct PriceChange {
    pub product_id: Uuid,
    /// What the cart held.
    pub old_price: i64,
    /// What it costs now (and what the cart holds from now on).
    pub new_price: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error(transparent)]
    Address(#[from] shop_web::AddressError),
    #[error("no such address in your address book")]
    AddressNotFound,
    #[error("shipping_method: {method:?} does not ship to {country}")]
    UnknownMethod { method: String, country: String },
    #[error("country: {0} is not sold to (no tax rate is configured for it)")]
    NotSoldTo(String),
    #[error(
        "prices changed since these lines entered the cart: {}; the cart now holds the new prices, check out again to pay them",
        describe_changes(.0)
    )]
    PriceChanged(Vec<PriceChange>),
    #[error("{0}")]
    Invalid(String),
    #[error("the cart is empty: add something before checking out")]
    EmptyCart,
    #[error("this Idempotency-Key was used for a checkout with another body")]
    KeyReused,
    #[error("no such order")]
    NotFound,
    #[error("an order that is {state} cannot {command}")]
    Illegal { state: State, command: Command },
    #[error("not enough stock: {}", describe(.0))]
    Short(Vec<Shortage>),
    #[error("the {0} service is unavailable; nothing was ordered, try again shortly")]
    Unavailable(&'static str),
    #[error("the order is busy; try again shortly")]
    Busy,
    #[error("the {service} service answered {status}: {detail}")]
    Upstream {
        service: &'static str,
        status: u16,
        detail: String,
    },
    #[error(
        "checkout needs a verified email address: use the link mailed to you, or ask for another with POST /users/me/verification"
    )]
    EmailNotVerified,
    #[error("this account no longer exists")]
    AccountGone,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("writing the event: {0}")]
    Outbox(#[from] shop_bridge::BridgeError),
}

fn describe_changes(changes: &[PriceChange]) -> String {
    changes
        .iter()
        .map(|change| {
            format!(
                "{} ({} then, {} now)",
                change.product_id, change.old_price, change.new_price
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe(shortages: &[Shortage]) -> String {
    shortages
        .iter()
        .map(|short| {
            format!(
                "{} ({} requested, {} available)",
                short.product_id, short.requested, short.available
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl OrderError {
    pub fn kind(&self) -> ProblemKind {
        match self {
            OrderError::Invalid(_)
            | OrderError::EmptyCart
            | OrderError::KeyReused
            | OrderError::Address(_)
            | OrderError::UnknownMethod { .. }
            | OrderError::NotSoldTo(_) => ProblemKind::Unprocessable,
            OrderError::NotFound | OrderError::AddressNotFound => ProblemKind::NotFound,
            OrderError::EmailNotVerified | OrderError::AccountGone => ProblemKind::Forbidden,
            OrderError::Illegal { .. } | OrderError::Short(_) | OrderError::PriceChanged(_) => {
                ProblemKind::Conflict
            }
            OrderError::Unavailable(_) | OrderError::Busy => ProblemKind::Unavailable,
            OrderError::Database(cause)
            | OrderError::Outbox(shop_bridge::BridgeError::Database(cause))
                if shop_web::postgres::unavailable(cause) =>
            {
                ProblemKind::Unavailable
            }
            OrderError::Upstream { .. } | OrderError::Database(_) | OrderError::Outbox(_) => {
                ProblemKind::Internal
            }
        }
    }

    /// Worth another try later (a dependency is down), rather than wrong for good.
    pub fn is_transient(&self) -> bool {
        self.kind() == ProblemKind::Unavailable
    }
}

impl From<OrderError> for ApiError {
    fn from(error: OrderError) -> Self {
        match (error.kind(), &error) {
            (ProblemKind::Internal, _) => ApiError::internal(&error),
            (ProblemKind::Unavailable, OrderError::Database(cause))
            | (
                ProblemKind::Unavailable,
                OrderError::Outbox(shop_bridge::BridgeError::Database(cause)),
            ) => {
                tracing::warn!(%cause, "database unavailable");
                ApiError::unavailable("the order database is unavailable; try again shortly")
            }
            (kind, OrderError::Illegal { state, .. }) => {
                ApiError::new(kind, error.to_string()).with("state", state.as_str())
            }
            (kind, OrderError::Short(shortages)) => {
                let short: Vec<_> = shortages
                    .iter()
                    .map(|short| {
                        serde_json::json!({
                            "product_id": short.product_id,
                            "requested": short.requested,
                            "available": short.available,
                        })
                    })
                    .collect();
                ApiError::new(kind, error.to_string()).with("short", short)
            }
            (_, OrderError::Address(error)) => error.clone().into(),
            (kind, OrderError::UnknownMethod { .. }) => {
                ApiError::new(kind, error.to_string()).with("field", "shipping_method")
            }
            (kind, OrderError::NotSoldTo(_)) => {
                ApiError::new(kind, error.to_string()).with("field", "country")
            }
            (kind, OrderError::PriceChanged(changes)) => ApiError::new(kind, error.to_string())
                .with("code", "price_changed")
                .with(
                    "price_changed",
                    serde_json::to_value(changes).unwrap_or_default(),
                ),
            (kind, _) => ApiError::new(kind, error.to_string()),
        }
    }
}
