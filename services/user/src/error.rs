//! What can go wrong in the user service, and the problem each answers with.

use shop_web::{ApiError, ProblemKind};

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("{0}")]
    Invalid(String),
    #[error("an account with this email exists already")]
    EmailTaken,
    #[error("email or password is wrong")]
    WrongCredentials,
    #[error("the current password is wrong")]
    WrongCurrentPassword,
    #[error("the current password is needed to change the password")]
    CurrentPasswordNeeded,
    #[error("the refresh token is unknown, expired or revoked")]
    RefreshRefused,
    #[error("this refresh token was used before; every session it belongs to is signed out")]
    RefreshReused,
    #[error("unknown client id or secret")]
    WrongClient,
    #[error("no such user")]
    NotFound,
    #[error("{0}")]
    Forbidden(String),
    #[error("the password hashers are busy; try again shortly")]
    HashersBusy,
    #[error("too many failed sign-ins for this account; try again later")]
    Throttled(std::time::Duration),
    #[error("the link is invalid, used or expired")]
    BadToken,
    #[error("the email address is verified already")]
    AlreadyVerified,
    #[error("too many mails for this account; try again later")]
    TooManyMails(std::time::Duration),
    #[error("another service: {0}")]
    Upstream(String),
    #[error("{0} is not available; try again shortly")]
    UpstreamUnavailable(&'static str),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("signing a token: {0}")]
    Signing(#[from] jsonwebtoken::errors::Error),
    #[error("hashing: {0}")]
    Hashing(String),
    #[error("recording an event: {0}")]
    Event(#[from] shop_bridge::BridgeError),
}

impl UserError {
    /// A write's error, with the constraint that means a duplicate email turned into a 409.
    pub fn from_write(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Database(db) if db.constraint() == Some("users_email_key") => {
                UserError::EmailTaken
            }
            _ => UserError::Database(error),
        }
    }

    pub fn kind(&self) -> ProblemKind {
        match self {
            UserError::Invalid(_) | UserError::CurrentPasswordNeeded => ProblemKind::Unprocessable,
            UserError::EmailTaken | UserError::AlreadyVerified => ProblemKind::Conflict,
            UserError::BadToken => ProblemKind::BadRequest,
            UserError::WrongCredentials
            | UserError::RefreshRefused
            | UserError::RefreshReused
            | UserError::WrongClient => ProblemKind::Unauthorized,
            UserError::WrongCurrentPassword | UserError::Forbidden(_) => ProblemKind::Forbidden,
            UserError::NotFound => ProblemKind::NotFound,
            UserError::HashersBusy => ProblemKind::Unavailable,
            UserError::Throttled(_) | UserError::TooManyMails(_) => ProblemKind::TooManyRequests,
            UserError::UpstreamUnavailable(_) => ProblemKind::Unavailable,
            UserError::Database(cause) if shop_web::postgres::unavailable(cause) => {
                ProblemKind::Unavailable
            }
            UserError::Database(_)
            | UserError::Signing(_)
            | UserError::Hashing(_)
            | UserError::Event(_)
            | UserError::Upstream(_) => ProblemKind::Internal,
        }
    }
}

impl From<UserError> for ApiError {
    fn from(error: UserError) -> Self {
        match (error.kind(), &error) {
            (ProblemKind::Internal, _) => ApiError::internal(&error),
            (ProblemKind::Unavailable, UserError::Database(cause)) => {
                tracing::warn!(%cause, "database unavailable");
                ApiError::unavailable("the user database is unavailable; try again shortly")
            }
            (_, UserError::Throttled(wait) | UserError::TooManyMails(wait)) => {
                ApiError::new(ProblemKind::TooManyRequests, error.to_string())
                    // Whole seconds, rounded up: a client that waits that long is let in.
                    .retry_after(wait.as_secs() + u64::from(wait.subsec_nanos() > 0))
            }
            (kind, _) => ApiError::new(kind, error.to_string()),
        }
    }
}
