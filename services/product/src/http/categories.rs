//! `/categories`: read by anyone, written by admins.

use chrono::{DateTime, Utc};
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use shop_web::{ApiError, BearerAuth};
use sqlx::PgPool;
use uuid::Uuid;

use super::ProductTag;
use crate::catalogue::CategoryInput;
use crate::store::{self, CategoryRow};

pub struct CategoriesApi {
    pub pool: PgPool,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
struct Category {
    id: Uuid,
    name: String,
    description: String,
    /// The category this one is part of, if any.
    parent_id: Option<Uuid>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<CategoryRow> for Category {
    fn from(row: CategoryRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            description: row.description,
            parent_id: row.parent_id,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// A category as an admin writes it.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct CategoryBody {
    name: String,
    #[oai(default)]
    description: String,
    parent_id: Option<Uuid>,
}

impl From<CategoryBody> for CategoryInput {
    fn from(body: CategoryBody) -> Self {
        Self {
            name: body.name,
            description: body.description,
            parent_id: body.parent_id,
        }
    }
}

#[derive(ApiResponse)]
enum Created {
    #[oai(status = 201)]
    Category(Json<Category>, #[oai(header = "Location")] String),
}

#[derive(ApiResponse)]
enum Deleted {
    #[oai(status = 204)]
    Done,
}

#[OpenApi(prefix_path = "/categories", tag = "ProductTag::Categories")]
impl CategoriesApi {
    /// Every category, by name.
    #[oai(path = "/", method = "get", operation_id = "list_categories")]
    async fn list(&self) -> Result<Json<Vec<Category>>, ApiError> {
        let rows = store::list_categories(&self.pool).await?;
        Ok(Json(rows.into_iter().map(Category::from).collect()))
    }

    #[oai(path = "/:id", method = "get", operation_id = "get_category")]
    async fn get(&self, id: Path<Uuid>) -> Result<Json<Category>, ApiError> {
        Ok(Json(store::category(&self.pool, id.0).await?.into()))
    }

    /// Create a category (admin).
    #[oai(path = "/", method = "post", operation_id = "create_category")]
    async fn create(
        &self,
        auth: BearerAuth,
        body: Json<CategoryBody>,
    ) -> Result<Created, ApiError> {
        auth.0.require_admin()?;
        let input = CategoryInput::from(body.0).validated()?;
        let row = store::insert_category(&self.pool, &input).await?;
        let location = format!("/categories/{}", row.id);
        Ok(Created::Category(Json(row.into()), location))
    }

    /// Replace a category (admin).
    #[oai(path = "/:id", method = "put", operation_id = "update_category")]
    async fn update(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
        body: Json<CategoryBody>,
    ) -> Result<Json<Category>, ApiError> {
        auth.0.require_admin()?;
        let input = CategoryInput::from(body.0).validated()?;
        Ok(Json(
            store::update_category(&self.pool, id.0, &input)
                .await?
                .into(),
        ))
    }

    /// Delete a category (admin); refused while products or subcategories are in it.
    #[oai(path = "/:id", method = "delete", operation_id = "delete_category")]
    async fn delete(&self, auth: BearerAuth, id: Path<Uuid>) -> Result<Deleted, ApiError> {
        auth.0.require_admin()?;
        store::delete_category(&self.pool, id.0).await?;
        Ok(Deleted::Done)
    }
}
