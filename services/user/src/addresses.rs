//! `/users/me/addresses`: each customer's address book — at most [`MAX_ADDRESSES`], one of them
//! the default shipping address (the first one saved is, until another is made so). Addresses
//! are checked by `shop_web::Address`; another customer's address is "not found".

use chrono::{DateTime, Utc};
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use shop_web::{Address, ApiError, BearerAuth};
use sqlx::{FromRow, PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::error::UserError;

/// Addresses one customer may keep.
pub const MAX_ADDRESSES: i64 = 20;

pub struct AddressesApi {
    pub pool: PgPool,
}

/// An address to save.
#[derive(Debug, Object)]
struct AddressRequest {
    #[oai(flatten)]
    address: Address,
    /// Make it the default shipping address (the first address is anyway).
    default: Option<bool>,
}

/// A saved address.
#[derive(Debug, Object)]
struct SavedAddress {
    id: Uuid,
    #[oai(flatten)]
    address: Address,
    /// The default shipping address.
    default: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

#[derive(Debug, Object)]
struct AddressList {
    items: Vec<SavedAddress>,
}

#[derive(FromRow)]
struct AddressRow {
    id: Uuid,
    name: String,
    line1: String,
    line2: Option<String>,
    city: String,
    region: Option<String>,
    postal_code: String,
    country: String,
    phone: Option<String>,
    is_default: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<AddressRow> for SavedAddress {
    fn from(row: AddressRow) -> Self {
        Self {
            id: row.id,
            address: Address {
                name: row.name,
                line1: row.line1,
                line2: row.line2,
                city: row.city,
                region: row.region,
                postal_code: row.postal_code,
                country: row.country,
                phone: row.phone,
            },
            default: row.is_default,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

#[derive(ApiResponse)]
enum Created {
    /// Saved.
    #[oai(status = 201)]
    Created(Json<SavedAddress>, #[oai(header = "Location")] String),
}

#[derive(ApiResponse)]
enum Deleted {
    /// Removed (a default removed leaves no default).
    #[oai(status = 204)]
    Done,
}

const COLUMNS: &str = "id, name, line1, line2, city, region, postal_code, country, phone, \
                       is_default, created_at, updated_at";

#[OpenApi(prefix_path = "/users/me/addresses", tag = "AddressTag::Addresses")]
impl AddressesApi {
    /// The caller's addresses, oldest first.
    #[oai(path = "/", method = "get", operation_id = "list_addresses")]
    async fn list(&self, auth: BearerAuth) -> Result<Json<AddressList>, ApiError> {
        let user = auth.0.user_id()?;
        let rows: Vec<AddressRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "select {COLUMNS} from addresses where user_id = $1 order by created_at, id"
        )))
        .bind(user)
        .fetch_all(&self.pool)
        .await
        .map_err(UserError::from)?;
        Ok(Json(AddressList {
            items: rows.into_iter().map(Into::into).collect(),
        }))
    }

    /// Save an address (422 naming the field that is wrong; 409 past 20 addresses).
    #[oai(path = "/", method = "post", operation_id = "create_address")]
    async fn create(
        &self,
        auth: BearerAuth,
        body: Json<AddressRequest>,
    ) -> Result<Created, ApiError> {
        let user = auth.0.user_id()?;
        let address = body.0.address.checked()?;
        let mut transaction = self.pool.begin().await.map_err(UserError::from)?;
        let count = lock_book(&mut transaction, user).await?;
        if count >= MAX_ADDRESSES {
            return Err(ApiError::conflict(format!(
                "an address book holds at most {MAX_ADDRESSES} addresses"
            )));
        }
        let default = body.0.default.unwrap_or(false) || count == 0;
        if default {
            clear_default(&mut transaction, user).await?;
        }
        let row: AddressRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "insert into addresses (id, user_id, name, line1, line2, city, region, postal_code,
                                    country, phone, is_default)
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             returning {COLUMNS}"
        )))
        .bind(Uuid::now_v7())
        .bind(user)
        .bind(&address.name)
        .bind(&address.line1)
        .bind(&address.line2)
        .bind(&address.city)
        .bind(&address.region)
        .bind(&address.postal_code)
        .bind(&address.country)
        .bind(&address.phone)
        .bind(default)
        .fetch_one(&mut *transaction)
        .await
        .map_err(UserError::from)?;
        transaction.commit().await.map_err(UserError::from)?;
        let location = format!("/users/me/addresses/{}", row.id);
        Ok(Created::Created(Json(row.into()), location))
    }

    /// One of the caller's addresses.
    #[oai(path = "/:id", method = "get", operation_id = "get_address")]
    async fn get(&self, auth: BearerAuth, id: Path<Uuid>) -> Result<Json<SavedAddress>, ApiError> {
        let user = auth.0.user_id()?;
        let row: Option<AddressRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "select {COLUMNS} from addresses where id = $1 and user_id = $2"
        )))
        .bind(id.0)
        .bind(user)
        .fetch_optional(&self.pool)
        .await
        .map_err(UserError::from)?;
        row.map(|row| Json(row.into())).ok_or_else(not_found)
    }

    /// Replace one of the caller's addresses (`default: true` makes it the default).
    #[oai(path = "/:id", method = "put", operation_id = "replace_address")]
    async fn replace(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
        body: Json<AddressRequest>,
    ) -> Result<Json<SavedAddress>, ApiError> {
        let user = auth.0.user_id()?;
        let address = body.0.address.checked()?;
        let mut transaction = self.pool.begin().await.map_err(UserError::from)?;
        lock_book(&mut transaction, user).await?;
        let make_default = body.0.default == Some(true);
        if make_default {
            clear_default(&mut transaction, user).await?;
        }
        let row: Option<AddressRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "update addresses set name = $3, line1 = $4, line2 = $5, city = $6, region = $7,
                 postal_code = $8, country = $9, phone = $10,
                 is_default = is_default or $11, updated_at = now()
             where id = $1 and user_id = $2
             returning {COLUMNS}"
        )))
        .bind(id.0)
        .bind(user)
        .bind(&address.name)
        .bind(&address.line1)
        .bind(&address.line2)
        .bind(&address.city)
        .bind(&address.region)
        .bind(&address.postal_code)
        .bind(&address.country)
        .bind(&address.phone)
        .bind(make_default)
        .fetch_optional(&mut *transaction)
        .await
        .map_err(UserError::from)?;
        let row = row.ok_or_else(not_found)?;
        transaction.commit().await.map_err(UserError::from)?;
        Ok(Json(row.into()))
    }

    /// Remove one of the caller's addresses. Orders placed with it keep their copy.
    #[oai(path = "/:id", method = "delete", operation_id = "delete_address")]
    async fn delete(&self, auth: BearerAuth, id: Path<Uuid>) -> Result<Deleted, ApiError> {
        let user = auth.0.user_id()?;
        let deleted = sqlx::query("delete from addresses where id = $1 and user_id = $2")
            .bind(id.0)
            .bind(user)
            .execute(&self.pool)
            .await
            .map_err(UserError::from)?;
        if deleted.rows_affected() == 0 {
            return Err(not_found());
        }
        Ok(Deleted::Done)
    }
}

/// Locks the user's address book (their account row) for this transaction; how many
/// addresses it holds.
async fn lock_book(
    transaction: &mut Transaction<'_, Postgres>,
    user: Uuid,
) -> Result<i64, UserError> {
    let found: Option<Uuid> = sqlx::query_scalar("select id from users where id = $1 for update")
        .bind(user)
        .fetch_optional(&mut **transaction)
        .await?;
    if found.is_none() {
        return Err(UserError::NotFound);
    }
    Ok(
        sqlx::query_scalar("select count(*) from addresses where user_id = $1")
            .bind(user)
            .fetch_one(&mut **transaction)
            .await?,
    )
}

async fn clear_default(
    transaction: &mut Transaction<'_, Postgres>,
    user: Uuid,
) -> Result<(), UserError> {
    sqlx::query("update addresses set is_default = false where user_id = $1 and is_default")
        .bind(user)
        .execute(&mut **transaction)
        .await?;
    Ok(())
}

fn not_found() -> ApiError {
    ApiError::not_found("no such address in your address book")
}

#[derive(poem_openapi::Tags)]
enum AddressTag {
    /// The caller's address book
    Addresses,
}
