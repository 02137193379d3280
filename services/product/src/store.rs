//! The catalogue's PostgreSQL queries.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use crate::catalogue::{CategoryInput, ListQuery, ProductInput, Sort};
use crate::error::ProductError;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, Clone, FromRow)]
pub struct CategoryRow {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub parent_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A product with its stock.
#[derive(Debug, Clone, FromRow)]
pub struct ProductRow {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub price_minor: i64,
    pub currency: String,
    pub category_id: Uuid,
    pub archived_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub on_hand: i32,
    pub reserved: i32,
}

impl ProductRow {
    pub fn available(&self) -> i32 {
        self.on_hand - self.reserved
    }
}

const CATEGORY_COLUMNS: &str = "id, name, description, parent_id, created_at, updated_at";
const PRODUCT_COLUMNS: &str = "p.id, p.sku, p.name, p.description, p.price_minor, p.currency, \
     p.category_id, p.archived_at, p.created_at, p.updated_at, s.on_hand, s.reserved";

fn sql(text: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(text)
}

pub async fn list_categories(pool: &PgPool) -> Result<Vec<CategoryRow>, ProductError> {
    Ok(sqlx::query_as::<_, CategoryRow>(sql(format!(
        "select {CATEGORY_COLUMNS} from categories order by lower(name), id"
    )))
    .fetch_all(pool)
    .await?)
}

pub async fn category(pool: &PgPool, id: Uuid) -> Result<CategoryRow, ProductError> {
    sqlx::query_as::<_, CategoryRow>(sql(format!(
        "select {CATEGORY_COLUMNS} from categories where id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or(ProductError::CategoryNotFound)
}

pub async fn insert_category(
    pool: &PgPool,
    input: &CategoryInput,
) -> Result<CategoryRow, ProductError> {
    sqlx::query_as::<_, CategoryRow>(sql(format!(
        "insert into categories (id, name, description, parent_id) values ($1, $2, $3, $4)
         returning {CATEGORY_COLUMNS}"
    )))
    .bind(Uuid::now_v7())
    .bind(&input.name)
    .bind(&input.description)
    .bind(input.parent_id)
    .fetch_one(pool)
    .await
    .map_err(ProductError::from_write)
}

pub async fn update_category(
    pool: &PgPool,
    id: Uuid,
    input: &CategoryInput,
) -> Result<CategoryRow, ProductError> {
    let mut transaction = pool.begin().await?;
    if let Some(parent) = input.parent_id {
        // The new parent must not be the category itself or one of its descendants. Lock the
        // category row, so two concurrent re-parentings cannot build a cycle between them.
        sqlx::query("select id from categories where id = $1 for update")
            .bind(id)
            .fetch_optional(&mut *transaction)
            .await?
            .ok_or(ProductError::CategoryNotFound)?;
        let cycle: bool = sqlx::query_scalar(
            "with recursive below as (
                 select id from categories where id = $1
                 union
                 select c.id from categories c join below b on c.parent_id = b.id
             )
             select exists (select 1 from below where id = $2)",
        )
        .bind(id)
        .bind(parent)
        .fetch_one(&mut *transaction)
        .await?;
        if cycle {
            return Err(ProductError::Invalid(
                "parent_id cannot be the category itself or one of its subcategories".into(),
            ));
        }
    }
    let row = sqlx::query_as::<_, CategoryRow>(sql(format!(
        "update categories set name = $2, description = $3, parent_id = $4, updated_at = now()
         where id = $1 returning {CATEGORY_COLUMNS}"
    )))
    .bind(id)
    .bind(&input.name)
    .bind(&input.description)
    .bind(input.parent_id)
    .fetch_optional(&mut *transaction)
    .await
    .map_err(ProductError::from_write)?
    .ok_or(ProductError::CategoryNotFound)?;
    transaction.commit().await?;
    Ok(row)
}

pub async fn delete_category(pool: &PgPool, id: Uuid) -> Result<(), ProductError> {
    let deleted = sqlx::query("delete from categories where id = $1")
        .bind(id)
        .execute(pool)
        .await
        .map_err(ProductError::from_category_delete)?;
    if deleted.rows_affected() == 0 {
        return Err(ProductError::CategoryNotFound);
    }
    Ok(())
}

pub async fn product(pool: &PgPool, id: Uuid) -> Result<ProductRow, ProductError> {
    sqlx::query_as::<_, ProductRow>(sql(format!(
        "select {PRODUCT_COLUMNS} from products p join stock s on s.product_id = p.id
         where p.id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or(ProductError::ProductNotFound)
}

/// Creates a product with its stock row (and, if there is initial stock, its first adjustment).
pub async fn insert_product(
    pool: &PgPool,
    input: &ProductInput,
    initial_stock: i32,
    actor: &str,
) -> Result<ProductRow, ProductError> {
    let id = Uuid::now_v7();
    let mut transaction = pool.begin().await?;
    sqlx::query(
        "insert into products (id, sku, name, description, price_minor, currency, category_id)
         values ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(&input.sku)
    .bind(&input.name)
    .bind(&input.description)
    .bind(input.price_minor)
    .bind(&input.currency)
    .bind(input.category_id)
    .execute(&mut *transaction)
    .await
    .map_err(ProductError::from_write)?;
    sqlx::query("insert into stock (product_id, on_hand) values ($1, $2)")
        .bind(id)
        .bind(initial_stock)
        .execute(&mut *transaction)
        .await?;
    if initial_stock > 0 {
        crate::inventory::record_adjustment(
            &mut transaction,
            id,
            initial_stock,
            initial_stock,
            "initial stock",
            actor,
        )
        .await?;
    }
    transaction.commit().await?;
    product(pool, id).await
}

pub async fn update_product(
    pool: &PgPool,
    id: Uuid,
    input: &ProductInput,
) -> Result<ProductRow, ProductError> {
    let mut transaction = pool.begin().await?;
    let old_price: Option<i64> =
        sqlx::query_scalar("select price_minor from products where id = $1 for update")
            .bind(id)
            .fetch_optional(&mut *transaction)
            .await?;
    let old_price = old_price.ok_or(ProductError::ProductNotFound)?;
    write_fields(&mut *transaction, id, input).await?;
    announce_price(&mut transaction, id, old_price, input).await?;
    shop_bridge::outbox::commit(transaction, pool).await?;
    product(pool, id).await
}

/// `ProductPriceChanged`, in the transaction that changed the price (carts holding the product
/// take the new price when they hear it).
async fn announce_price(
    transaction: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    id: Uuid,
    old_price: i64,
    input: &ProductInput,
) -> Result<(), ProductError> {
    if old_price == input.price_minor {
        return Ok(());
    }
    let changed = shop_schemas::ProductPriceChanged {
        event_id: Uuid::new_v4(),
        occurred_at: shop_schemas::now_millis(),
        product_id: id,
        old_price,
        new_price: input.price_minor,
        currency: input.currency.clone(),
    };
    let trace_id = shop_web::request_id::trace_context();
    shop_bridge::outbox::enqueue(transaction, changed, Some(&trace_id)).await?;
    Ok(())
}

/// Writes every field of a product; returns how many rows changed (0: no such product).
async fn write_fields(
    executor: impl sqlx::PgExecutor<'_>,
    id: Uuid,
    input: &ProductInput,
) -> Result<u64, ProductError> {
    let updated = sqlx::query(
        "update products set sku = $2, name = $3, description = $4, price_minor = $5,
             currency = $6, category_id = $7, updated_at = now()
         where id = $1",
    )
    .bind(id)
    .bind(&input.sku)
    .bind(&input.name)
    .bind(&input.description)
    .bind(input.price_minor)
    .bind(&input.currency)
    .bind(input.category_id)
    .execute(executor)
    .await
    .map_err(ProductError::from_write)?;
    Ok(updated.rows_affected())
}

/// Changes some of a product's fields: `merge` gets the current ones (read under a row lock, so
/// concurrent changes to different fields both stay) and returns the new ones.
pub async fn patch_product(
    pool: &PgPool,
    id: Uuid,
    merge: impl FnOnce(ProductInput) -> Result<ProductInput, ProductError>,
) -> Result<ProductRow, ProductError> {
    let mut transaction = pool.begin().await?;
    let current = sqlx::query_as::<_, (String, String, String, i64, String, Uuid)>(
        "select sku, name, description, price_minor, currency, category_id from products
         where id = $1 for update",
    )
    .bind(id)
    .fetch_optional(&mut *transaction)
    .await?
    .ok_or(ProductError::ProductNotFound)?;
    let (sku, name, description, price_minor, currency, category_id) = current;
    let old_price = price_minor;
    let input = merge(ProductInput {
        sku,
        name,
        description,
        price_minor,
        currency,
        category_id,
    })?;
    write_fields(&mut *transaction, id, &input).await?;
    announce_price(&mut transaction, id, old_price, &input).await?;
    shop_bridge::outbox::commit(transaction, pool).await?;
    product(pool, id).await
}

/// Archives a product: hidden from listings, refused for new reservations, still readable.
pub async fn archive_product(pool: &PgPool, id: Uuid) -> Result<(), ProductError> {
    let archived = sqlx::query(
        "update products set archived_at = coalesce(archived_at, now()), updated_at = now()
         where id = $1",
    )
    .bind(id)
    .execute(pool)
    .await?;
    if archived.rows_affected() == 0 {
        return Err(ProductError::ProductNotFound);
    }
    Ok(())
}

/// One page of the public listing, and how many products match in all.
pub async fn list_products(
    pool: &PgPool,
    query: &ListQuery,
) -> Result<(Vec<ProductRow>, i64), ProductError> {
    let mut total = QueryBuilder::<Postgres>::new(
        "select count(*) from products p join stock s on s.product_id = p.id",
    );
    push_filters(&mut total, query);
    let total: i64 = total.build_query_scalar().fetch_one(pool).await?;

    let mut page = QueryBuilder::<Postgres>::new(format!(
        "select {PRODUCT_COLUMNS} from products p join stock s on s.product_id = p.id"
    ));
    push_filters(&mut page, query);
    match query.sort {
        Sort::Relevance => {
            page.push(" order by ts_rank(p.search, websearch_to_tsquery('english', ");
            page.push_bind(query.search.clone().unwrap_or_default());
            page.push(")) desc, p.id")
        }
        Sort::PriceAscending => page.push(" order by p.price_minor asc, p.id asc"),
        Sort::PriceDescending => page.push(" order by p.price_minor desc, p.id desc"),
        Sort::NameAscending => page.push(" order by p.name asc, p.id asc"),
        Sort::NameDescending => page.push(" order by p.name desc, p.id desc"),
        Sort::Newest => page.push(" order by p.created_at desc, p.id desc"),
        Sort::Oldest => page.push(" order by p.created_at asc, p.id asc"),
    };
    page.push(" limit ");
    page.push_bind(i64::from(query.per_page));
    page.push(" offset ");
    page.push_bind(query.offset());
    let rows = page.build_query_as::<ProductRow>().fetch_all(pool).await?;
    Ok((rows, total))
}

fn push_filters(builder: &mut QueryBuilder<Postgres>, query: &ListQuery) {
    builder.push(" where p.archived_at is null");
    if let Some(category) = query.category {
        // A category's listing includes its subcategories'.
        builder.push(
            " and p.category_id in (with recursive below as (
                  select id from categories where id = ",
        );
        builder.push_bind(category);
        builder.push(
            " union select c.id from categories c join below b on c.parent_id = b.id
              ) select id from below)",
        );
    }
    if let Some(min) = query.min_price {
        builder.push(" and p.price_minor >= ");
        builder.push_bind(min);
    }
    if let Some(max) = query.max_price {
        builder.push(" and p.price_minor <= ");
        builder.push_bind(max);
    }
    if let Some(currency) = &query.currency {
        builder.push(" and p.currency = ");
        builder.push_bind(currency.clone());
    }
    if query.in_stock {
        builder.push(" and s.on_hand - s.reserved > 0");
    }
    if let Some(search) = &query.search {
        builder.push(" and p.search @@ websearch_to_tsquery('english', ");
        builder.push_bind(search.clone());
        builder.push(")");
    }
}
