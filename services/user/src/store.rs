//! The user service's PostgreSQL queries: accounts and refresh-token families.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

use crate::error::UserError;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, Clone, FromRow)]
pub struct UserRow {
    pub id: Uuid,
    pub email: String,
    pub name: String,
    pub phone: Option<String>,
    pub role: String,
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub struct NewUser<'a> {
    pub email: &'a str,
    pub name: &'a str,
    pub phone: Option<&'a str>,
    pub role: &'a str,
    pub password_hash: &'a str,
}

/// The columns of an update; `None` leaves a column as it is.
#[derive(Default)]
pub struct UserChanges {
    pub email: Option<String>,
    pub name: Option<String>,
    pub phone: Option<Option<String>>,
    pub role: Option<String>,
    pub password_hash: Option<String>,
}

const USER_COLUMNS: &str = "id, email, name, phone, role, password_hash, created_at, updated_at";

pub async fn insert_user(
    executor: impl sqlx::PgExecutor<'_>,
    user: NewUser<'_>,
) -> Result<UserRow, UserError> {
    sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(format!(
        "insert into users (id, email, name, phone, role, password_hash)
         values ($1, $2, $3, $4, $5, $6)
         returning {USER_COLUMNS}"
    )))
    .bind(Uuid::now_v7())
    .bind(user.email)
    .bind(user.name)
    .bind(user.phone)
    .bind(user.role)
    .bind(user.password_hash)
    .fetch_one(executor)
    .await
    .map_err(UserError::from_write)
}

pub async fn user_by_id(pool: &PgPool, id: Uuid) -> Result<Option<UserRow>, UserError> {
    Ok(sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(format!(
        "select {USER_COLUMNS} from users where id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?)
}

pub async fn user_by_email(pool: &PgPool, email: &str) -> Result<Option<UserRow>, UserError> {
    Ok(sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(format!(
        "select {USER_COLUMNS} from users where email = $1"
    )))
    .bind(email)
    .fetch_optional(pool)
    .await?)
}

pub async fn update_user(
    pool: &PgPool,
    id: Uuid,
    changes: UserChanges,
) -> Result<Option<UserRow>, UserError> {
    let set_phone = changes.phone.is_some();
    sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(format!(
        "update users set
             email = coalesce($2, email),
             name = coalesce($3, name),
             phone = case when $4 then $5 else phone end,
             role = coalesce($6, role),
             password_hash = coalesce($7, password_hash),
             updated_at = now()
         where id = $1
         returning {USER_COLUMNS}"
    )))
    .bind(id)
    .bind(changes.email)
    .bind(changes.name)
    .bind(set_phone)
    .bind(changes.phone.flatten())
    .bind(changes.role)
    .bind(changes.password_hash)
    .fetch_optional(pool)
    .await
    .map_err(UserError::from_write)
}

/// Inserts a refresh token: the first of a new family (a login), or the next of one (a refresh,
/// inside its transaction).
pub async fn insert_refresh_token(
    executor: impl sqlx::PgExecutor<'_>,
    token_hash: &[u8],
    family_id: Uuid,
    user_id: Uuid,
    expires_at: DateTime<Utc>,
) -> Result<(), UserError> {
    sqlx::query(
        "insert into refresh_tokens (token_hash, family_id, user_id, expires_at)
         values ($1, $2, $3, $4)",
    )
    .bind(token_hash)
    .bind(family_id)
    .bind(user_id)
    .bind(expires_at)
    .execute(executor)
    .await?;
    Ok(())
}

/// What presenting a refresh token did.
pub enum Rotation {
    /// The token was current: it is now used, and `next` is the family's new token.
    Rotated { user_id: Uuid },
    /// The token had been used before: the family is revoked.
    ReuseDetected,
    /// Unknown, expired or revoked.
    Refused,
}

/// Rotates a refresh token: marks `presented` used and stores `next` in its family, atomically,
/// so of two concurrent refreshes with one token exactly one wins and the other is reuse.
pub async fn rotate_refresh_token(
    pool: &PgPool,
    presented: &[u8],
    next: &[u8],
    expires_at: DateTime<Utc>,
) -> Result<Rotation, UserError> {
    let mut transaction = pool.begin().await?;
    let current: Option<(Uuid, Uuid)> = sqlx::query_as(
        "update refresh_tokens set used_at = now()
         where token_hash = $1 and used_at is null and revoked_at is null and expires_at > now()
         returning family_id, user_id",
    )
    .bind(presented)
    .fetch_optional(&mut *transaction)
    .await?;
    if let Some((family_id, user_id)) = current {
        insert_refresh_token(&mut *transaction, next, family_id, user_id, expires_at).await?;
        transaction.commit().await?;
        return Ok(Rotation::Rotated { user_id });
    }
    let reused: Option<Uuid> = sqlx::query_scalar(
        "select family_id from refresh_tokens where token_hash = $1 and used_at is not null",
    )
    .bind(presented)
    .fetch_optional(&mut *transaction)
    .await?;
    let Some(family_id) = reused else {
        return Ok(Rotation::Refused);
    };
    sqlx::query(
        "update refresh_tokens set revoked_at = now()
         where family_id = $1 and revoked_at is null",
    )
    .bind(family_id)
    .execute(&mut *transaction)
    .await?;
    transaction.commit().await?;
    Ok(Rotation::ReuseDetected)
}

/// Revokes the family of a refresh token (logout). Unknown tokens are ignored.
pub async fn revoke_family_of(pool: &PgPool, token_hash: &[u8]) -> Result<(), UserError> {
    sqlx::query(
        "update refresh_tokens set revoked_at = now()
         where revoked_at is null
           and family_id = (select family_id from refresh_tokens where token_hash = $1)",
    )
    .bind(token_hash)
    .execute(pool)
    .await?;
    Ok(())
}

/// Revokes every refresh token of a user (after a password change).
pub async fn revoke_all_of_user(pool: &PgPool, user_id: Uuid) -> Result<(), UserError> {
    sqlx::query(
        "update refresh_tokens set revoked_at = now() where user_id = $1 and revoked_at is null",
    )
    .bind(user_id)
    .execute(pool)
    .await?;
    Ok(())
}
