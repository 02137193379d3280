//! What can go wrong in the product service, and the problem each answers with.

use serde_json::json;
use shop_web::{ApiError, ProblemKind};
use uuid::Uuid;

/// A line that could not be reserved: how much was asked for and how much there is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortage {
    pub product_id: Uuid,
    pub requested: i32,
    pub available: i32,
}

/// A price a reservation expected, and the current one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceChange {
    pub product_id: Uuid,
    pub expected: i64,
    pub current: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum ProductError {
    #[error("{0}")]
    Invalid(String),
    #[error("no such category")]
    CategoryNotFound,
    #[error("no such product")]
    ProductNotFound,
    #[error("no reservation for this order")]
    ReservationNotFound,
    #[error("a category with this name exists already")]
    CategoryNameTaken,
    #[error("a product with this SKU exists already")]
    SkuTaken,
    #[error("the category still has {0}")]
    CategoryInUse(&'static str),
    #[error("not enough stock for {} product(s)", .0.len())]
    Short(Vec<Shortage>),
    #[error("stock cannot go below what is reserved ({reserved} reserved)")]
    BelowReserved { reserved: i32 },
    #[error("this order already has a reservation with other lines")]
    ReservationMismatch,
    #[error("the reservation is {0}")]
    ReservationClosed(String),
    /// Prices the caller expected that are no longer current: nothing was reserved.
    #[error("prices changed for {} product(s)", .0.len())]
    PriceChanged(Vec<PriceChange>),
    #[error("recording an event: {0}")]
    Event(#[from] shop_bridge::BridgeError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

impl ProductError {
    /// An insert's or update's error: a taken name or SKU is a conflict, a reference to a
    /// category that does not exist (any more) is the client's mistake.
    pub fn from_write(error: sqlx::Error) -> Self {
        match constraint_of(&error).as_deref() {
            Some("products_sku_key") => ProductError::SkuTaken,
            Some("categories_name_key") => ProductError::CategoryNameTaken,
            Some("products_category_id_fkey") => {
                ProductError::Invalid("category_id names no category".into())
            }
            Some("categories_parent_id_fkey") => {
                ProductError::Invalid("parent_id names no category".into())
            }
            _ => ProductError::Database(error),
        }
    }

    /// A category delete's error: what still refers to it.
    pub fn from_category_delete(error: sqlx::Error) -> Self {
        match constraint_of(&error).as_deref() {
            Some("products_category_id_fkey") => ProductError::CategoryInUse("products"),
            Some("categories_parent_id_fkey") => ProductError::CategoryInUse("subcategories"),
            _ => ProductError::Database(error),
        }
    }

    pub fn kind(&self) -> ProblemKind {
        match self {
            ProductError::Invalid(_) => ProblemKind::Unprocessable,
            ProductError::CategoryNotFound
            | ProductError::ProductNotFound
            | ProductError::ReservationNotFound => ProblemKind::NotFound,
            ProductError::CategoryNameTaken
            | ProductError::SkuTaken
            | ProductError::CategoryInUse(_)
            | ProductError::Short(_)
            | ProductError::BelowReserved { .. }
            | ProductError::ReservationMismatch
            | ProductError::ReservationClosed(_)
            | ProductError::PriceChanged(_) => ProblemKind::Conflict,
            ProductError::Database(cause) if shop_web::postgres::unavailable(cause) => {
                ProblemKind::Unavailable
            }
            ProductError::Database(_) | ProductError::Event(_) => ProblemKind::Internal,
        }
    }
}

fn constraint_of(error: &sqlx::Error) -> Option<String> {
    match error {
        sqlx::Error::Database(db) => db.constraint().map(str::to_owned),
        _ => None,
    }
}

impl From<ProductError> for ApiError {
    fn from(error: ProductError) -> Self {
        match (error.kind(), &error) {
            (ProblemKind::Internal, _) => ApiError::internal(&error),
            (ProblemKind::Unavailable, cause) => {
                tracing::warn!(%cause, "database unavailable");
                ApiError::unavailable("the product database is unavailable; try again shortly")
            }
            (kind, ProductError::Short(shortages)) => {
                let short: Vec<_> = shortages
                    .iter()
                    .map(|short| {
                        json!({
                            "product_id": short.product_id,
                            "requested": short.requested,
                            "available": short.available,
                        })
                    })
                    .collect();
                let named: Vec<String> = shortages
                    .iter()
                    .map(|short| {
                        format!(
                            "{} ({} requested, {} available)",
                            short.product_id, short.requested, short.available
                        )
                    })
                    .collect();
                ApiError::new(kind, format!("not enough stock: {}", named.join(", ")))
                    .with("short", short)
            }
            (kind, ProductError::PriceChanged(changes)) => {
                let changed: Vec<_> = changes
                    .iter()
                    .map(|change| {
                        json!({
                            "product_id": change.product_id,
                            "expected": change.expected,
                            "current": change.current,
                        })
                    })
                    .collect();
                ApiError::new(kind, error.to_string())
                    .with("code", "price_changed")
                    .with("price_changed", changed)
            }
            (kind, _) => ApiError::new(kind, error.to_string()),
        }
    }
}
