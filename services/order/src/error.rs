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

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
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
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("writing the event: {0}")]
    Outbox(#[from] shop_bridge::BridgeError),
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
            OrderError::Invalid(_) | OrderError::EmptyCart | OrderError::KeyReused => {
                ProblemKind::Unprocessable
            }
            OrderError::NotFound => ProblemKind::NotFound,
            OrderError::Illegal { .. } | OrderError::Short(_) => ProblemKind::Conflict,
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
            (kind, _) => ApiError::new(kind, error.to_string()),
        }
    }
}
