//! `/internal/prices`: what products cost now, for the order service's quotes. For Shop
//! services only (a `service` token); nginx never routes `/internal/`.

use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use shop_web::{ApiError, BearerAuth};
use sqlx::PgPool;
use uuid::Uuid;

use super::ProductTag;
use crate::error::ProductError;

pub struct PricesApi {
    pub pool: PgPool,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct PricesRequest {
    /// At most 100.
    product_ids: Vec<Uuid>,
}

#[derive(Debug, Object)]
struct Price {
    product_id: Uuid,
    name: String,
    /// Minor units of `currency`.
    price: i64,
    currency: String,
    /// False once the product is archived.
    sold: bool,
}

#[derive(Debug, Object)]
struct Prices {
    /// The products that exist, of those asked for.
    items: Vec<Price>,
}

#[OpenApi(prefix_path = "/internal/prices", tag = "ProductTag::Reservations")]
impl PricesApi {
    /// The current price of each product asked for (services only).
    #[oai(path = "/", method = "post", operation_id = "current_prices")]
    async fn prices(
        &self,
        auth: BearerAuth,
        body: Json<PricesRequest>,
    ) -> Result<Json<Prices>, ApiError> {
        auth.0.require_service()?;
        if body.0.product_ids.len() > 100 {
            return Err(ApiError::unprocessable("at most 100 product_ids"));
        }
        let rows: Vec<(Uuid, String, i64, String, bool)> = sqlx::query_as(
            "select id, name, price_minor, currency, archived_at is null from products
             where id = any($1)",
        )
        .bind(&body.0.product_ids)
        .fetch_all(&self.pool)
        .await
        .map_err(ProductError::from)?;
        Ok(Json(Prices {
            items: rows
                .into_iter()
                .map(|(product_id, name, price, currency, sold)| Price {
                    product_id,
                    name,
                    price,
                    currency,
                    sold,
                })
                .collect(),
        }))
    }
}
