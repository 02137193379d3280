//! The user service's PostgreSQL queries: accounts and refresh-token families.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgPool, Postgres, Transaction};
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
    pub email_verified_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
}

impl UserRow {
    pub fn is_deleted(&self) -> bool {
        self.deleted_at.is_some()
    }
}

pub struct NewUser<'a> {
    pub email: &'a str,
    pub name: &'a str,
    pub phone: Option<&'a str>,
    pub role: &'a str,
    pub password_hash: &'a str,
    /// An account whose address needs no proof (the bootstrap admin's).
    pub email_verified: bool,
}

/// The columns of an update; `None` leaves a column as it is.
#[derive(Default)]
pub struct UserChanges {
    pub email: Option<String>,
    pub name: Option<String>,
    pub phone: Option<Option<String>>,
    pub role: Option<String>,
    pub password_hash: Option<String>,
    /// `Some(false)`: the email is no longer proven (an admin changed it).
    pub email_verified: Option<bool>,
}

pub const USER_COLUMNS: &str = "id, email, name, phone, role, password_hash, created_at, updated_at, \
     email_verified_at, deleted_at";

pub async fn insert_user(
    executor: impl sqlx::PgExecutor<'_>,
    user: NewUser<'_>,
) -> Result<UserRow, UserError> {
    sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(format!(
        "insert into users (id, email, name, phone, role, password_hash, email_verified_at)
         values ($1, $2, $3, $4, $5, $6, case when $7 then now() end)
         returning {USER_COLUMNS}"
    )))
    .bind(Uuid::now_v7())
    .bind(user.email)
    .bind(user.name)
    .bind(user.phone)
    .bind(user.role)
    .bind(user.password_hash)
    .bind(user.email_verified)
    .fetch_one(executor)
    .await
    .map_err(UserError::from_write)
}

/// An account by id, deleted ones included (what they keep is anonymous).
pub async fn user_by_id(
    executor: impl sqlx::PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<UserRow>, UserError> {
    Ok(sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(format!(
        "select {USER_COLUMNS} from users where id = $1"
    )))
    .bind(id)
    .fetch_optional(executor)
    .await?)
}

/// The live account with this (normalised) email.
pub async fn user_by_email(pool: &PgPool, email: &str) -> Result<Option<UserRow>, UserError> {
    Ok(sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(format!(
        "select {USER_COLUMNS} from users where email = $1 and deleted_at is null"
    )))
    .bind(email)
    .fetch_optional(pool)
    .await?)
}

pub async fn update_user(
    executor: impl sqlx::PgExecutor<'_>,
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
             email_verified_at = case
                 when $8 then coalesce(email_verified_at, now())
                 when not $8 then null
                 else email_verified_at
             end,
             updated_at = now()
         where id = $1 and deleted_at is null
         returning {USER_COLUMNS}"
    )))
    .bind(id)
    .bind(changes.email)
    .bind(changes.name)
    .bind(set_phone)
    .bind(changes.phone.flatten())
    .bind(changes.role)
    .bind(changes.password_hash)
    .bind(changes.email_verified)
    .fetch_optional(executor)
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

/// An update revoking the live refresh tokens that match `condition`, locking them in one order
/// (by hash). Run only under [`revoking`]'s lock.
macro_rules! revoke_where {
    ($condition:literal) => {
        concat!(
            "with live as (
                 select token_hash from refresh_tokens
                 where ",
            $condition,
            " and revoked_at is null
                 order by token_hash
                 for update
             )
             update refresh_tokens set revoked_at = now()
             where token_hash in (select token_hash from live)"
        )
    };
}

/// Takes the lock under which a user's refresh tokens are revoked, one revocation at a time.
/// Two revocations over one family (two reuse detections at once, a logout beside a reuse)
/// deadlocked without it, each holding some of the family's rows and waiting for the others',
/// with refreshes of the same token queued in between: one of them answered 500. A rotation
/// holds one row and waits for nothing after that, so it needs no such lock; and no lock on a
/// row may be held while waiting for this one.
async fn revoking(
    transaction: &mut Transaction<'_, Postgres>,
    user_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query("select pg_advisory_xact_lock(hashtextextended($1::text, 0))")
        .bind(user_id)
        .execute(&mut **transaction)
        .await?;
    Ok(())
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
    // Not current. An update that waited for a concurrent refresh of the same token still locks
    // the row it then finds used: end that transaction before waiting for the revocation lock,
    // or a revoker waiting for that row would wait for this transaction, and it for the revoker.
    transaction.rollback().await?;
    let mut transaction = pool.begin().await?;
    let reused: Option<(Uuid, Uuid)> = sqlx::query_as(
        "select family_id, user_id from refresh_tokens where token_hash = $1 and used_at is not null",
    )
    .bind(presented)
    .fetch_optional(&mut *transaction)
    .await?;
    let Some((family_id, user_id)) = reused else {
        return Ok(Rotation::Refused);
    };
    revoke_family(transaction, family_id, user_id).await?;
    Ok(Rotation::ReuseDetected)
}

/// Revokes a family of `user_id`'s refresh tokens, under the revocation lock, and commits.
async fn revoke_family(
    mut transaction: Transaction<'_, Postgres>,
    family_id: Uuid,
    user_id: Uuid,
) -> Result<(), sqlx::Error> {
    revoking(&mut transaction, user_id).await?;
    sqlx::query(revoke_where!("family_id = $1"))
        .bind(family_id)
        .execute(&mut *transaction)
        .await?;
    transaction.commit().await
}

/// Revokes the family of a refresh token (logout). Unknown tokens are ignored.
pub async fn revoke_family_of(pool: &PgPool, token_hash: &[u8]) -> Result<(), UserError> {
    let mut transaction = pool.begin().await?;
    let family: Option<(Uuid, Uuid)> =
        sqlx::query_as("select family_id, user_id from refresh_tokens where token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&mut *transaction)
            .await?;
    let Some((family_id, user_id)) = family else {
        return Ok(());
    };
    Ok(revoke_family(transaction, family_id, user_id).await?)
}

/// Revokes every refresh token of a user (after a password change).
pub async fn revoke_all_of_user(pool: &PgPool, user_id: Uuid) -> Result<(), UserError> {
    let mut transaction = pool.begin().await?;
    revoke_all_in(&mut transaction, user_id).await?;
    transaction.commit().await?;
    Ok(())
}

/// Revokes every refresh token of a user inside `transaction` (a reset, a deletion), under the
/// revocation lock. Take it before locking any of the user's token rows.
pub async fn revoke_all_in(
    transaction: &mut Transaction<'_, Postgres>,
    user_id: Uuid,
) -> Result<(), UserError> {
    revoking(transaction, user_id).await?;
    sqlx::query(revoke_where!("user_id = $1"))
        .bind(user_id)
        .execute(&mut **transaction)
        .await?;
    Ok(())
}

/// The admin listing's filters.
pub struct UserFilter {
    /// A fragment of the (lower-case) email.
    pub email: Option<String>,
    pub role: Option<&'static str>,
    pub verified: Option<bool>,
    /// Deleted accounts only, or live ones only.
    pub deleted: bool,
}

/// One page of accounts matching `filter`, oldest first, and how many match in all.
pub async fn list_users(
    pool: &PgPool,
    filter: &UserFilter,
    paging: shop_web::Paging,
) -> Result<(Vec<UserRow>, i64), UserError> {
    // `%` and `_` in the fragment are meant literally.
    let pattern = filter.email.as_ref().map(|fragment| {
        let escaped = fragment
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_");
        format!("%{escaped}%")
    });
    const MATCHING: &str = "($1::text is null or email like $1)
           and ($2::text is null or role = $2)
           and ($3::boolean is null or (email_verified_at is not null) = $3)
           and (deleted_at is not null) = $4";
    let rows = sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(format!(
        "select {USER_COLUMNS} from users where {MATCHING}
         order by created_at, id limit $5 offset $6"
    )))
    .bind(&pattern)
    .bind(filter.role)
    .bind(filter.verified)
    .bind(filter.deleted)
    .bind(i64::from(paging.per_page))
    .bind(paging.offset())
    .fetch_all(pool)
    .await?;
    let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "select count(*) from users where {MATCHING}"
    )))
    .bind(&pattern)
    .bind(filter.role)
    .bind(filter.verified)
    .bind(filter.deleted)
    .fetch_one(pool)
    .await?;
    Ok((rows, total))
}
