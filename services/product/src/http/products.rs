//! `/products`: the public listing and product pages; writes and stock for admins.

use chrono::{DateTime, Utc};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use shop_web::{ApiError, BearerAuth};
use sqlx::PgPool;
use uuid::Uuid;

use super::ProductTag;
use crate::catalogue::{ListQuery, ProductInput, Sort};
use crate::inventory::{self, AdjustmentRow, StockRow};
use crate::store::{self, ProductRow};

pub struct ProductsApi {
    pub pool: PgPool,
}

/// An amount of money in minor units (cents) of an ISO 4217 currency.
#[derive(Debug, Clone, Object)]
#[oai(deny_unknown_fields)]
struct Money {
    /// In minor units: 1999 is 19.99 EUR.
    amount: i64,
    /// ISO 4217, e.g. EUR.
    currency: String,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
struct Product {
    id: Uuid,
    sku: String,
    name: String,
    description: String,
    price: Money,
    category_id: Uuid,
    /// Units that can be ordered now (on hand minus reserved).
    available: i32,
    in_stock: bool,
    /// Set when the product was deleted: it is no longer listed or sold.
    archived_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<ProductRow> for Product {
    fn from(row: ProductRow) -> Self {
        let available = row.available();
        Self {
            id: row.id,
            sku: row.sku,
            name: row.name,
            description: row.description,
            price: Money {
                amount: row.price_minor,
                currency: row.currency,
            },
            category_id: row.category_id,
            available,
            in_stock: available > 0,
            archived_at: row.archived_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// A new product (admin).
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct NewProduct {
    sku: String,
    name: String,
    #[oai(default)]
    description: String,
    price: Money,
    category_id: Uuid,
    /// Units on hand to start with.
    #[oai(default)]
    stock: i32,
}

impl NewProduct {
    fn split(self) -> (ProductFields, i32) {
        let fields = ProductFields {
            sku: self.sku,
            name: self.name,
            description: self.description,
            price: self.price,
            category_id: self.category_id,
        };
        (fields, self.stock)
    }
}

/// A product's fields, all of them (PUT).
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct ProductFields {
    sku: String,
    name: String,
    #[oai(default)]
    description: String,
    price: Money,
    category_id: Uuid,
}

impl From<ProductFields> for ProductInput {
    fn from(fields: ProductFields) -> Self {
        Self {
            sku: fields.sku,
            name: fields.name,
            description: fields.description,
            price_minor: fields.price.amount,
            currency: fields.price.currency,
            category_id: fields.category_id,
        }
    }
}

/// Some of a product's fields (PATCH); absent ones stay.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct ProductChanges {
    sku: Option<String>,
    name: Option<String>,
    description: Option<String>,
    price: Option<Money>,
    category_id: Option<Uuid>,
}

#[derive(Debug, Object)]
struct ProductPage {
    items: Vec<Product>,
    page: u32,
    per_page: u32,
    /// Products matching the filters, on all pages.
    total: i64,
}

#[derive(Debug, Clone, Copy, Enum)]
enum SortOrder {
    #[oai(rename = "relevance")]
    Relevance,
    #[oai(rename = "price")]
    Price,
    #[oai(rename = "-price")]
    PriceDescending,
    #[oai(rename = "name")]
    Name,
    #[oai(rename = "-name")]
    NameDescending,
    #[oai(rename = "newest")]
    Newest,
    #[oai(rename = "oldest")]
    Oldest,
}

#[derive(Debug, Object)]
struct Stock {
    product_id: Uuid,
    on_hand: i32,
    reserved: i32,
    available: i32,
}

impl Stock {
    fn of(product_id: Uuid, row: StockRow) -> Self {
        Self {
            product_id,
            on_hand: row.on_hand,
            reserved: row.reserved,
            available: row.on_hand - row.reserved,
        }
    }
}

/// A stock count (PUT): on hand becomes this.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct StockCount {
    on_hand: i32,
    #[oai(default = "default_count_reason")]
    reason: String,
}

fn default_count_reason() -> String {
    "stock count".to_owned()
}

/// Units added (positive) or removed (negative), and why.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct StockAdjustmentBody {
    delta: i32,
    reason: String,
}

#[derive(Debug, Object)]
struct StockAdjustment {
    id: i64,
    delta: i32,
    on_hand_after: i32,
    reason: String,
    /// Who made it (user id).
    actor: String,
    created_at: DateTime<Utc>,
}

impl From<AdjustmentRow> for StockAdjustment {
    fn from(row: AdjustmentRow) -> Self {
        Self {
            id: row.id,
            delta: row.delta,
            on_hand_after: row.on_hand_after,
            reason: row.reason,
            actor: row.actor,
            created_at: row.created_at,
        }
    }
}

#[derive(ApiResponse)]
enum Created {
    #[oai(status = 201)]
    Product(Json<Product>, #[oai(header = "Location")] String),
}

#[derive(ApiResponse)]
enum Adjusted {
    #[oai(status = 201)]
    Stock(Json<Stock>),
}

#[derive(ApiResponse)]
enum Archived {
    /// Archived: no longer listed or sold, still readable by id.
    #[oai(status = 204)]
    Done,
}

fn valid_reason(reason: &str) -> Result<String, ApiError> {
    let reason = reason.trim();
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(ApiError::unprocessable(
            "reason must be 1 to 500 characters",
        ));
    }
    Ok(reason.to_owned())
}

#[OpenApi(prefix_path = "/products", tag = "ProductTag::Products")]
impl ProductsApi {
    /// The catalogue: filter by category (with its subcategories), price, stock and text
    /// (PostgreSQL full-text search, best match first); sort; one page at a time.
    #[allow(clippy::too_many_arguments)]
    #[oai(path = "/", method = "get", operation_id = "list_products")]
    async fn list(
        &self,
        /// Only this category and its subcategories.
        category: Query<Option<Uuid>>,
        /// Lowest price, minor units.
        min_price: Query<Option<i64>>,
        /// Highest price, minor units.
        max_price: Query<Option<i64>>,
        /// Only prices in this currency.
        currency: Query<Option<String>>,
        /// Only products that can be ordered now.
        in_stock: Query<Option<bool>>,
        /// Words to search for in names and descriptions.
        q: Query<Option<String>>,
        /// Default: relevance when searching, newest otherwise.
        sort: Query<Option<SortOrder>>,
        /// From 1.
        page: Query<Option<u32>>,
        /// 1 to 100, default 20.
        per_page: Query<Option<u32>>,
    ) -> Result<Json<ProductPage>, ApiError> {
        let searching = q.0.as_deref().is_some_and(|text| !text.trim().is_empty());
        let sort = match sort.0 {
            Some(SortOrder::Relevance) => Sort::Relevance,
            Some(SortOrder::Price) => Sort::PriceAscending,
            Some(SortOrder::PriceDescending) => Sort::PriceDescending,
            Some(SortOrder::Name) => Sort::NameAscending,
            Some(SortOrder::NameDescending) => Sort::NameDescending,
            Some(SortOrder::Newest) => Sort::Newest,
            Some(SortOrder::Oldest) => Sort::Oldest,
            None if searching => Sort::Relevance,
            None => Sort::Newest,
        };
        let query = ListQuery {
            category: category.0,
            min_price: min_price.0,
            max_price: max_price.0,
            currency: currency.0,
            in_stock: in_stock.0.unwrap_or(false),
            search: q.0,
            sort,
            page: page.0.unwrap_or(1),
            per_page: per_page.0.unwrap_or(20),
        }
        .validated()?;
        let (rows, total) = store::list_products(&self.pool, &query).await?;
        Ok(Json(ProductPage {
            items: rows.into_iter().map(Product::from).collect(),
            page: query.page,
            per_page: query.per_page,
            total,
        }))
    }

    /// One product, archived ones too (old orders still name them).
    #[oai(path = "/:id", method = "get", operation_id = "get_product")]
    async fn get(&self, id: Path<Uuid>) -> Result<Json<Product>, ApiError> {
        Ok(Json(store::product(&self.pool, id.0).await?.into()))
    }

    /// Create a product (admin).
    #[oai(path = "/", method = "post", operation_id = "create_product")]
    async fn create(&self, auth: BearerAuth, body: Json<NewProduct>) -> Result<Created, ApiError> {
        auth.0.require_admin()?;
        let (fields, stock) = body.0.split();
        if stock < 0 {
            return Err(ApiError::unprocessable("stock cannot be negative"));
        }
        let input = ProductInput::from(fields).validated()?;
        let row = store::insert_product(&self.pool, &input, stock, &auth.0.0.sub).await?;
        let location = format!("/products/{}", row.id);
        Ok(Created::Product(Json(row.into()), location))
    }

    /// Replace a product's fields (admin).
    #[oai(path = "/:id", method = "put", operation_id = "replace_product")]
    async fn replace(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
        body: Json<ProductFields>,
    ) -> Result<Json<Product>, ApiError> {
        auth.0.require_admin()?;
        let body = body.0;
        let input = ProductInput {
            sku: body.sku,
            name: body.name,
            description: body.description,
            price_minor: body.price.amount,
            currency: body.price.currency,
            category_id: body.category_id,
        }
        .validated()?;
        Ok(Json(
            store::update_product(&self.pool, id.0, &input)
                .await?
                .into(),
        ))
    }

    /// Change some of a product's fields (admin).
    #[oai(path = "/:id", method = "patch", operation_id = "change_product")]
    async fn change(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
        body: Json<ProductChanges>,
    ) -> Result<Json<Product>, ApiError> {
        auth.0.require_admin()?;
        let changes = body.0;
        let row = store::patch_product(&self.pool, id.0, |current| {
            ProductInput {
                sku: changes.sku.unwrap_or(current.sku),
                name: changes.name.unwrap_or(current.name),
                description: changes.description.unwrap_or(current.description),
                price_minor: changes
                    .price
                    .as_ref()
                    .map_or(current.price_minor, |price| price.amount),
                currency: changes
                    .price
                    .map_or(current.currency, |price| price.currency),
                category_id: changes.category_id.unwrap_or(current.category_id),
            }
            .validated()
        })
        .await?;
        Ok(Json(row.into()))
    }

    /// Delete a product (admin): it is archived, not removed.
    #[oai(path = "/:id", method = "delete", operation_id = "archive_product")]
    async fn archive(&self, auth: BearerAuth, id: Path<Uuid>) -> Result<Archived, ApiError> {
        auth.0.require_admin()?;
        store::archive_product(&self.pool, id.0).await?;
        Ok(Archived::Done)
    }

    /// A product's stock: on hand, reserved, available (admin).
    #[oai(path = "/:id/stock", method = "get", operation_id = "get_stock")]
    async fn stock(&self, auth: BearerAuth, id: Path<Uuid>) -> Result<Json<Stock>, ApiError> {
        auth.0.require_admin()?;
        let stock = inventory::stock(&self.pool, id.0).await?;
        Ok(Json(Stock::of(id.0, stock)))
    }

    /// Set on hand after a count (admin); recorded as an adjustment.
    #[oai(path = "/:id/stock", method = "put", operation_id = "set_stock")]
    async fn set_stock(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
        body: Json<StockCount>,
    ) -> Result<Json<Stock>, ApiError> {
        auth.0.require_admin()?;
        if body.on_hand < 0 {
            return Err(ApiError::unprocessable("on_hand cannot be negative"));
        }
        let reason = valid_reason(&body.reason)?;
        let stock =
            inventory::set_stock(&self.pool, id.0, body.on_hand, &reason, &auth.0.0.sub).await?;
        Ok(Json(Stock::of(id.0, stock)))
    }

    /// Add or remove units, with a reason (admin).
    #[oai(
        path = "/:id/stock/adjustments",
        method = "post",
        operation_id = "adjust_stock"
    )]
    async fn adjust_stock(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
        body: Json<StockAdjustmentBody>,
    ) -> Result<Adjusted, ApiError> {
        auth.0.require_admin()?;
        if body.delta == 0 {
            return Err(ApiError::unprocessable("delta cannot be zero"));
        }
        let reason = valid_reason(&body.reason)?;
        let stock =
            inventory::adjust_stock(&self.pool, id.0, body.delta, &reason, &auth.0.0.sub).await?;
        Ok(Adjusted::Stock(Json(Stock::of(id.0, stock))))
    }

    /// The history of a product's stock changes, newest first (admin).
    #[oai(
        path = "/:id/stock/adjustments",
        method = "get",
        operation_id = "list_adjustments"
    )]
    async fn adjustments(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> Result<Json<Vec<StockAdjustment>>, ApiError> {
        auth.0.require_admin()?;
        store::product(&self.pool, id.0).await?;
        let rows = inventory::adjustments(&self.pool, id.0, 200).await?;
        Ok(Json(rows.into_iter().map(StockAdjustment::from).collect()))
    }
}
