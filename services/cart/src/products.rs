//! What the cart service asks the product service: a product's name, price and availability,
//! cached for a moment. Concurrent look-ups of one product share one request. When the product
//! service cannot be asked, adds answer 503 — an expired entry is never used in its place, so no
//! cart ever gets a stale price.

use shop_telemetry::Traced;
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use serde::Deserialize;
use uuid::Uuid;

use crate::cart::ProductInfo;
use crate::error::CartError;

#[derive(Clone)]
pub struct Products {
    http: reqwest::Client,
    base: String,
    cache: Cache<Uuid, Arc<ProductInfo>>,
}

#[derive(Deserialize)]
struct ProductBody {
    id: Uuid,
    name: String,
    price: Price,
    available: i32,
    archived_at: Option<String>,
}

#[derive(Deserialize)]
struct Price {
    amount: i64,
    currency: String,
}

impl Products {
    pub fn new(base: &str, ttl: Duration) -> Self {
        Self {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(3))
                .build()
                .unwrap_or_default(),
            base: base.trim_end_matches('/').to_owned(),
            cache: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build(),
        }
    }

    pub async fn get(&self, id: Uuid) -> Result<Arc<ProductInfo>, CartError> {
        self.cache
            .try_get_with(id, self.fetch(id))
            .await
            .map_err(|error: Arc<CartError>| (*error).clone())
    }

    async fn fetch(&self, id: Uuid) -> Result<Arc<ProductInfo>, CartError> {
        let response = self
            .http
            .get(format!("{}/products/{id}", self.base))
            .traced()
            .send()
            .await
            .map_err(|error| {
                tracing::warn!(%error, "the product service did not answer");
                CartError::ProductsUnavailable
            })?;
        match response.status().as_u16() {
            200 => {}
            404 => return Err(CartError::ProductNotFound(id)),
            status => {
                tracing::warn!(status, "the product service answered an error");
                return Err(CartError::ProductsUnavailable);
            }
        }
        let body: ProductBody = response.json().await.map_err(|error| {
            tracing::warn!(%error, "the product service answered something unreadable");
            CartError::ProductsUnavailable
        })?;
        Ok(Arc::new(ProductInfo {
            id: body.id,
            name: body.name,
            unit_price: body.price.amount,
            currency: body.price.currency,
            available: body.available,
            archived: body.archived_at.is_some(),
        }))
    }
}
