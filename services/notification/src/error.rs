//! What can go wrong in the notification service's HTTP surface.

use shop_web::{ApiError, ProblemKind};

#[derive(Debug, thiserror::Error)]
pub enum NotificationError {
    #[error("no such notification")]
    NotFound,
    #[error("only a failed notification can be retried; this one is {0}")]
    NotFailed(String),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

impl From<NotificationError> for ApiError {
    fn from(error: NotificationError) -> Self {
        match &error {
            NotificationError::NotFound => ApiError::new(ProblemKind::NotFound, error.to_string()),
            NotificationError::NotFailed(status) => {
                ApiError::new(ProblemKind::Conflict, error.to_string())
                    .with("notification_status", status.as_str())
            }
            NotificationError::Database(cause) if shop_web::postgres::unavailable(cause) => {
                ApiError::unavailable("the notification database is unavailable; try again shortly")
            }
            NotificationError::Database(_) => ApiError::internal(&error),
        }
    }
}
