//! What can go wrong in the payment service, and the problem each answers with.

use shop_web::{ApiError, ProblemKind};

use crate::state::Status;

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("no such payment")]
    NotFound,
    #[error("{0}")]
    Invalid(String),
    #[error("the refund of {asked} is more than the {left} left to refund")]
    TooMuch { asked: i64, left: i64 },
    #[error("a payment that is {0} cannot be refunded")]
    NotRefundable(Status),
    #[error("the payment is busy; try again shortly")]
    Busy,
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("writing the event: {0}")]
    Outbox(#[from] shop_bridge::BridgeError),
}

impl PaymentError {
    pub fn kind(&self) -> ProblemKind {
        match self {
            PaymentError::NotFound => ProblemKind::NotFound,
            PaymentError::Invalid(_) | PaymentError::TooMuch { .. } => ProblemKind::Unprocessable,
            PaymentError::NotRefundable(_) => ProblemKind::Conflict,
            PaymentError::Busy => ProblemKind::Unavailable,
            PaymentError::Database(cause) if shop_web::postgres::unavailable(cause) => {
                ProblemKind::Unavailable
            }
            PaymentError::Database(_) | PaymentError::Outbox(_) => ProblemKind::Internal,
        }
    }
}

impl From<PaymentError> for ApiError {
    fn from(error: PaymentError) -> Self {
        match (error.kind(), &error) {
            (ProblemKind::Internal, _) => ApiError::internal(&error),
            (ProblemKind::Unavailable, PaymentError::Database(cause)) => {
                tracing::warn!(%cause, "database unavailable");
                ApiError::unavailable("the payment database is unavailable; try again shortly")
            }
            (kind, PaymentError::NotRefundable(status)) => {
                ApiError::new(kind, error.to_string()).with("payment_status", status.as_str())
            }
            (kind, PaymentError::TooMuch { left, .. }) => {
                ApiError::new(kind, error.to_string()).with("refundable", *left)
            }
            (kind, _) => ApiError::new(kind, error.to_string()),
        }
    }
}
