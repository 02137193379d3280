//! An account's life after registration: proving the email address, resetting a forgotten
//! password, changing the address, and deletion. Every mail goes out as an event through the
//! outbox, in the transaction that makes the token it carries, so a token exists exactly when
//! its mail is on its way.
//!
//! Tokens are single-use and stored hashed (`account_tokens`); a used, expired, unknown or
//! someone else's token is the same 400 problem, so presenting one teaches nothing.

use std::time::Duration;

use chrono::{DateTime, Utc};
use shop_bridge::outbox;
use shop_schemas::{AccountMailKind, AccountMailRequested, UserDeleted, UserUpdated};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use crate::accounts::{Accounts, normalize_email, valid_email, valid_password};
use crate::error::UserError;
use crate::store::{self, UserRow};
use crate::tokens::OpaqueToken;

/// What a token proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// The address in the token's `email` belongs to the account (registration, or a change).
    VerifyEmail,
    PasswordReset,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Purpose::VerifyEmail => "verify_email",
            Purpose::PasswordReset => "password_reset",
        }
    }
}

/// Verification mails (registration's included) one account may have sent per window.
const VERIFY_MAILS: i64 = 3;
const VERIFY_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Reset mails per address and per account per window; beyond it nothing more is sent (the
/// answer stays 202).
const RESET_MAILS: i64 = 3;
const RESET_WINDOW: Duration = Duration::from_secs(60 * 60);

/// A token just made, and when it stops working.
pub struct Issued {
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

/// Stores a new token for `user_id` in `transaction`.
pub async fn issue(
    transaction: &mut Transaction<'_, Postgres>,
    user_id: Uuid,
    purpose: Purpose,
    email: &str,
    ttl: Duration,
) -> Result<Issued, UserError> {
    let token = OpaqueToken::generate();
    let expires_at = Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
    sqlx::query(
        "insert into account_tokens (token_hash, user_id, purpose, email, expires_at)
         values ($1, $2, $3, $4, $5)",
    )
    .bind(&token.hash)
    .bind(user_id)
    .bind(purpose.as_str())
    .bind(email)
    .bind(expires_at)
    .execute(&mut **transaction)
    .await?;
    Ok(Issued {
        token: token.token,
        expires_at,
    })
}

/// Uses up a live token of `purpose` (of `user_id`, when given): the account and the address
/// it names, or `None` when it is unknown, used, expired or someone else's.
async fn consume(
    transaction: &mut Transaction<'_, Postgres>,
    presented: &str,
    purpose: Purpose,
    user_id: Option<Uuid>,
) -> Result<Option<(Uuid, String)>, UserError> {
    Ok(sqlx::query_as(
        "update account_tokens set used_at = now()
         where token_hash = $1 and purpose = $2 and ($3::uuid is null or user_id = $3)
           and used_at is null and expires_at > now()
         returning user_id, email",
    )
    .bind(OpaqueToken::hash_of(presented))
    .bind(purpose.as_str())
    .bind(user_id)
    .fetch_optional(&mut **transaction)
    .await?)
}

/// Tokens of `purpose` made within `window` for the account or sent to the address, and how
/// long until the oldest of them leaves the window.
async fn recent(
    executor: impl sqlx::PgExecutor<'_>,
    purpose: Purpose,
    user_id: Uuid,
    email: &str,
    window: Duration,
) -> Result<(i64, Duration), UserError> {
    let (count, oldest): (i64, Option<DateTime<Utc>>) = sqlx::query_as(
        "select count(*), min(created_at) from account_tokens
         where purpose = $1 and (user_id = $2 or email = $3)
           and created_at > now() - make_interval(secs => $4)",
    )
    .bind(purpose.as_str())
    .bind(user_id)
    .bind(email)
    .bind(window.as_secs_f64())
    .fetch_one(executor)
    .await?;
    let wait = oldest
        .and_then(|oldest| {
            (oldest + chrono::Duration::from_std(window).ok()? - Utc::now())
                .to_std()
                .ok()
        })
        .unwrap_or(Duration::from_secs(1));
    Ok((count, wait))
}

fn mail(
    user: &UserRow,
    kind: AccountMailKind,
    to: &str,
    issued: Option<&Issued>,
    new_email: Option<&str>,
) -> AccountMailRequested {
    AccountMailRequested {
        event_id: Uuid::new_v4(),
        occurred_at: shop_schemas::now_millis(),
        user_id: user.id,
        kind,
        email: to.to_owned(),
        name: user.name.clone(),
        token: issued.map(|issued| issued.token.clone()),
        expires_at: issued.map(|issued| issued.expires_at.timestamp_millis()),
        new_email: new_email.map(str::to_owned),
    }
}

/// A mail with a link: what its token proves, the kind of mail, where it goes, how long it works.
struct Link<'a> {
    purpose: Purpose,
    kind: AccountMailKind,
    to: &'a str,
    ttl: Duration,
}

/// Makes the token a mail's link carries and writes the mail's event, in `transaction`.
async fn mail_link(
    transaction: &mut Transaction<'_, Postgres>,
    user: &UserRow,
    link: Link<'_>,
) -> Result<Issued, UserError> {
    let issued = issue(transaction, user.id, link.purpose, link.to, link.ttl).await?;
    enqueue(
        transaction,
        mail(user, link.kind, link.to, Some(&issued), None),
    )
    .await?;
    Ok(issued)
}

/// The account as it now is, for every service that keeps a copy of its contact details.
pub fn updated(user: &UserRow) -> UserUpdated {
    UserUpdated {
        event_id: Uuid::new_v4(),
        occurred_at: shop_schemas::now_millis(),
        user_id: user.id,
        email: user.email.clone(),
        name: user.name.clone(),
        phone: user.phone.clone(),
        email_verified: user.email_verified_at.is_some(),
    }
}

async fn enqueue(
    transaction: &mut Transaction<'_, Postgres>,
    event: impl Into<shop_schemas::Envelope>,
) -> Result<(), UserError> {
    let trace_id = shop_web::request_id::trace_context();
    outbox::enqueue(transaction, event, Some(&trace_id)).await?;
    Ok(())
}

impl Accounts {
    /// `POST /users/verify-email`: proves the address the token was sent to. For an email
    /// change, the account takes the new address now.
    pub async fn verify_email(&self, user_id: Uuid, token: &str) -> Result<UserRow, UserError> {
        let mut transaction = self.pool.begin().await?;
        let Some((_, email)) =
            consume(&mut transaction, token, Purpose::VerifyEmail, Some(user_id)).await?
        else {
            return Err(UserError::BadToken);
        };
        let before = store::user_by_id(&mut *transaction, user_id)
            .await?
            .filter(|user| !user.is_deleted())
            .ok_or(UserError::BadToken)?;
        let changes = store::UserChanges {
            email: (before.email != email).then(|| email.clone()),
            email_verified: Some(true),
            ..store::UserChanges::default()
        };
        let user = store::update_user(&mut *transaction, user_id, changes)
            .await?
            .ok_or(UserError::BadToken)?;
        if before.email != user.email || before.email_verified_at.is_none() {
            // The other links out for this account prove nothing any more.
            sqlx::query(
                "update account_tokens set used_at = now()
                 where user_id = $1 and purpose = 'verify_email' and used_at is null",
            )
            .bind(user_id)
            .execute(&mut *transaction)
            .await?;
            enqueue(&mut transaction, updated(&user)).await?;
        }
        outbox::commit(transaction, &self.pool).await?;
        tracing::info!(%user_id, changed = before.email != user.email, "email verified");
        Ok(user)
    }

    /// `POST /users/me/verification`: another verification mail, at most [`VERIFY_MAILS`] per
    /// [`VERIFY_WINDOW`].
    pub async fn resend_verification(&self, user_id: Uuid) -> Result<DateTime<Utc>, UserError> {
        let user = self.get(user_id).await?;
        if user.email_verified_at.is_some() {
            return Err(UserError::AlreadyVerified);
        }
        let mut transaction = self.pool.begin().await?;
        self.verification_allowed(&mut transaction, &user).await?;
        let ttl = self.lifecycle.verification_ttl;
        let link = Link {
            purpose: Purpose::VerifyEmail,
            kind: AccountMailKind::VerifyEmail,
            to: &user.email,
            ttl,
        };
        let issued = mail_link(&mut transaction, &user, link).await?;
        outbox::commit(transaction, &self.pool).await?;
        Ok(issued.expires_at)
    }

    async fn verification_allowed(
        &self,
        transaction: &mut Transaction<'_, Postgres>,
        user: &UserRow,
    ) -> Result<(), UserError> {
        // One request at a time per account, or two could both count two and send a fourth.
        lock_account(transaction, user.id).await?;
        let (sent, wait) = recent(
            &mut **transaction,
            Purpose::VerifyEmail,
            user.id,
            &user.email,
            VERIFY_WINDOW,
        )
        .await?;
        if sent >= VERIFY_MAILS {
            return Err(UserError::TooManyMails(wait));
        }
        Ok(())
    }

    /// `POST /users/password-reset`, done by the resets actor after the request was answered:
    /// mails a reset link if the address is a live account's and neither it nor the account
    /// had [`RESET_MAILS`] within [`RESET_WINDOW`]. Says nothing to the caller either way.
    pub async fn send_password_reset(&self, email: &str) -> Result<(), UserError> {
        let email = normalize_email(email);
        let Some(user) = store::user_by_email(&self.pool, &email).await? else {
            tracing::info!("password reset asked for an unknown address");
            return Ok(());
        };
        let mut transaction = self.pool.begin().await?;
        lock_account(&mut transaction, user.id).await?;
        let (sent, _) = recent(
            &mut *transaction,
            Purpose::PasswordReset,
            user.id,
            &email,
            RESET_WINDOW,
        )
        .await?;
        if sent >= RESET_MAILS {
            tracing::warn!(user_id = %user.id, "password reset mails limited");
            return Ok(());
        }
        let link = Link {
            purpose: Purpose::PasswordReset,
            kind: AccountMailKind::PasswordReset,
            to: &email,
            ttl: self.lifecycle.reset_ttl,
        };
        mail_link(&mut transaction, &user, link).await?;
        outbox::commit(transaction, &self.pool).await?;
        tracing::info!(user_id = %user.id, "password reset mailed");
        Ok(())
    }

    /// `POST /users/password-reset/confirm`: sets the new password, ends every session, and
    /// tells the account's address.
    pub async fn confirm_password_reset(
        &self,
        token: &str,
        password: &str,
    ) -> Result<(), UserError> {
        valid_password(password)?;
        // Hashing is the slow part: not while holding the token's row.
        let password_hash = self.hashers.hash(password).await?;
        let mut transaction = self.pool.begin().await?;
        let Some((user_id, sent_to)) =
            consume(&mut transaction, token, Purpose::PasswordReset, None).await?
        else {
            return Err(UserError::BadToken);
        };
        // Sessions first: the revocation lock comes before any of the account's rows.
        store::revoke_all_in(&mut transaction, user_id).await?;
        let before = store::user_by_id(&mut *transaction, user_id)
            .await?
            .filter(|user| !user.is_deleted())
            .ok_or(UserError::BadToken)?;
        let changes = store::UserChanges {
            password_hash: Some(password_hash),
            // The mail reached the account's address: that proves it.
            email_verified: (sent_to == before.email).then_some(true),
            ..store::UserChanges::default()
        };
        let user = store::update_user(&mut *transaction, user_id, changes)
            .await?
            .ok_or(UserError::BadToken)?;
        sqlx::query(
            "update account_tokens set used_at = now()
             where user_id = $1 and purpose = 'password_reset' and used_at is null",
        )
        .bind(user_id)
        .execute(&mut *transaction)
        .await?;
        sqlx::query("delete from login_failures where email = $1")
            .bind(&user.email)
            .execute(&mut *transaction)
            .await?;
        let notice = mail(
            &user,
            AccountMailKind::PasswordChanged,
            &user.email,
            None,
            None,
        );
        enqueue(&mut transaction, notice).await?;
        outbox::commit(transaction, &self.pool).await?;
        tracing::info!(%user_id, "password reset; sessions revoked");
        Ok(())
    }

    /// `POST /users/me/email`: a verification link to the new address and a notice to the
    /// current one; the account keeps its address until the link is used.
    pub async fn request_email_change(
        &self,
        user_id: Uuid,
        new_email: &str,
        current_password: &str,
    ) -> Result<DateTime<Utc>, UserError> {
        let user = self.get(user_id).await?;
        let new_email = valid_email(new_email)?;
        if new_email == user.email {
            return Err(UserError::Invalid(
                "the new email is the account's email already".into(),
            ));
        }
        if !self
            .hashers
            .verify(current_password, &user.password_hash)
            .await?
        {
            return Err(UserError::WrongCurrentPassword);
        }
        if store::user_by_email(&self.pool, &new_email)
            .await?
            .is_some()
        {
            return Err(UserError::EmailTaken);
        }
        let mut transaction = self.pool.begin().await?;
        self.verification_allowed(&mut transaction, &user).await?;
        let link = Link {
            purpose: Purpose::VerifyEmail,
            kind: AccountMailKind::EmailChange,
            to: &new_email,
            ttl: self.lifecycle.verification_ttl,
        };
        let issued = mail_link(&mut transaction, &user, link).await?;
        let to_old = mail(
            &user,
            AccountMailKind::EmailChangeNotice,
            &user.email,
            None,
            Some(&new_email),
        );
        enqueue(&mut transaction, to_old).await?;
        outbox::commit(transaction, &self.pool).await?;
        tracing::info!(%user_id, "email change asked for");
        Ok(issued.expires_at)
    }

    /// Deletes an account: it can no longer sign in, its sessions end, its addresses and
    /// tokens go, its row keeps only its id, and `UserDeleted` asks every other service to
    /// erase or anonymise what it holds. The address is free for a new account at once.
    pub async fn delete(&self, user_id: Uuid, by_admin: bool) -> Result<(), UserError> {
        let mut transaction = self.pool.begin().await?;
        store::revoke_all_in(&mut transaction, user_id).await?;
        let user = store::user_by_id(&mut *transaction, user_id)
            .await?
            .filter(|user| !user.is_deleted())
            .ok_or(UserError::NotFound)?;
        sqlx::query(
            "update users set
                 email = 'deleted-' || id || '@deleted.invalid',
                 name = 'Deleted customer',
                 phone = null,
                 -- no argon2 hash: no password matches it
                 password_hash = '!deleted',
                 email_verified_at = null,
                 deleted_at = now(),
                 updated_at = now()
             where id = $1",
        )
        .bind(user_id)
        .execute(&mut *transaction)
        .await?;
        for erase in [
            "delete from addresses where user_id = $1",
            "delete from account_tokens where user_id = $1",
            "delete from refresh_tokens where user_id = $1",
            // Published events about the account carry its name and address: the copies kept
            // here go (Kafka's copies age out with the topic's retention).
            "delete from outbox where message_key = $1::text and sent_at is not null",
        ] {
            sqlx::query(erase)
                .bind(user_id)
                .execute(&mut *transaction)
                .await?;
        }
        sqlx::query("delete from login_failures where email = $1")
            .bind(&user.email)
            .execute(&mut *transaction)
            .await?;
        let event = UserDeleted {
            event_id: Uuid::new_v4(),
            occurred_at: shop_schemas::now_millis(),
            user_id,
            by_admin,
        };
        enqueue(&mut transaction, event).await?;
        outbox::commit(transaction, &self.pool).await?;
        tracing::info!(%user_id, by_admin, "account deleted");
        Ok(())
    }

    /// `DELETE /users/me`: the customer deletes their own account, proving the password.
    pub async fn delete_own(&self, user_id: Uuid, password: &str) -> Result<(), UserError> {
        let user = self.get(user_id).await?;
        if crate::accounts::role_of(&user) == shop_web::Role::Admin {
            return Err(UserError::Forbidden(
                "an admin account is not deleted this way: another admin demotes it first".into(),
            ));
        }
        if !self.hashers.verify(password, &user.password_hash).await? {
            return Err(UserError::WrongCurrentPassword);
        }
        self.delete(user_id, false).await
    }
}

/// Serialises the token requests of one account (the rate limits count, then insert).
async fn lock_account(
    transaction: &mut Transaction<'_, Postgres>,
    user_id: Uuid,
) -> Result<(), UserError> {
    sqlx::query("select pg_advisory_xact_lock(hashtextextended($1::text, 1))")
        .bind(user_id)
        .execute(&mut **transaction)
        .await?;
    Ok(())
}
