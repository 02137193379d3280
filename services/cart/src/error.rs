//! What can go wrong in the cart service, and the problem each answers with.

use shop_web::{ApiError, ProblemKind};
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CartError {
    #[error("{0}")]
    Invalid(String),
    #[error("no such product: {0}")]
    ProductNotFound(Uuid),
    #[error("only {available} of product {product_id} can be ordered now")]
    NotEnoughStock { product_id: Uuid, available: i32 },
    #[error("no cart yet: POST /carts makes one, adding an item too")]
    CartNotFound,
    #[error("this product is not in the cart")]
    LineNotFound,
    #[error("the product service is unavailable; try again shortly")]
    ProductsUnavailable,
    #[error("the cart store is unavailable; try again shortly")]
    StoreUnavailable,
    #[error("the cart is busy; try again shortly")]
    Busy,
}

impl CartError {
    pub fn kind(&self) -> ProblemKind {
        match self {
            CartError::Invalid(_) | CartError::ProductNotFound(_) => ProblemKind::Unprocessable,
            CartError::NotEnoughStock { .. } => ProblemKind::Conflict,
            CartError::CartNotFound | CartError::LineNotFound => ProblemKind::NotFound,
            CartError::ProductsUnavailable | CartError::StoreUnavailable | CartError::Busy => {
                ProblemKind::Unavailable
            }
        }
    }
}

impl From<CartError> for ApiError {
    fn from(error: CartError) -> Self {
        let problem = ApiError::new(error.kind(), error.to_string());
        match error {
            CartError::NotEnoughStock {
                product_id,
                available,
            } => problem
                .with("product_id", product_id.to_string())
                .with("available", available),
            _ => problem,
        }
    }
}
