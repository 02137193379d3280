//! What the user service does with accounts and sessions, independent of HTTP.

use std::time::Duration;

use email_address::{EmailAddress, Options};
use sha2::{Digest, Sha256};
use shop_bridge::outbox;
use shop_config::Secret;
use shop_schemas::UserRegistered;
use shop_web::{Caller, Role};
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::UserError;
use crate::lifecycle;
use crate::password::Hashers;
use crate::store::{self, NewUser, Rotation, UserChanges, UserRow};
use crate::throttle;
use crate::tokens::{OpaqueToken, SigningKey, TokenPolicy};

pub const MIN_PASSWORD: usize = 8;
pub const MAX_PASSWORD: usize = 128;
const MAX_NAME: usize = 100;

pub struct Accounts {
    pub pool: PgPool,
    pub hashers: Hashers,
    pub key: SigningKey,
    pub tokens: TokenPolicy,
    pub service_clients: Vec<(String, Secret)>,
    /// Checked when the email is unknown, so that answer takes as long as a wrong password.
    pub dummy_hash: String,
    pub lifecycle: LifecyclePolicy,
}

/// How long the links of account mails work.
pub struct LifecyclePolicy {
    pub verification_ttl: Duration,
    pub reset_ttl: Duration,
}

/// A signed-in session: a new access token and refresh token.
pub struct Session {
    pub access_token: String,
    pub access_ttl: Duration,
    pub refresh_token: String,
    pub refresh_ttl: Duration,
}

/// A change to an account, as validated by [`Accounts::update`].
#[derive(Default)]
pub struct Update {
    pub email: Option<String>,
    pub name: Option<String>,
    pub phone: Option<Option<String>>,
    pub password: Option<String>,
    pub current_password: Option<String>,
    pub role: Option<Role>,
}

pub fn role_of(user: &UserRow) -> Role {
    if user.role == "admin" {
        Role::Admin
    } else {
        Role::Customer
    }
}

impl Accounts {
    pub async fn register(
        &self,
        email: &str,
        password: &str,
        name: &str,
        phone: Option<&str>,
    ) -> Result<UserRow, UserError> {
        let email = valid_email(email)?;
        let name = valid_name(name)?;
        let phone = phone.map(valid_phone).transpose()?;
        valid_password(password)?;
        let password_hash = self.hashers.hash(password).await?;
        // The account and its UserRegistered event commit together, or neither does.
        let mut transaction = self.pool.begin().await?;
        let user = store::insert_user(
            &mut *transaction,
            NewUser {
                email: &email,
                name: &name,
                phone: phone.as_deref(),
                role: "customer",
                password_hash: &password_hash,
                email_verified: false,
            },
        )
        .await?;
        // The welcome mail carries the link that proves the address.
        let verification = lifecycle::issue(
            &mut transaction,
            user.id,
            lifecycle::Purpose::VerifyEmail,
            &user.email,
            self.lifecycle.verification_ttl,
        )
        .await?;
        let event = UserRegistered {
            event_id: Uuid::new_v4(),
            occurred_at: shop_schemas::now_millis(),
            user_id: user.id,
            email: user.email.clone(),
            name: user.name.clone(),
            phone: user.phone.clone(),
            verification_token: Some(verification.token),
            verification_expires_at: Some(verification.expires_at.timestamp_millis()),
        };
        let trace_id = shop_web::request_id::trace_context();
        outbox::enqueue(&mut transaction, event, Some(&trace_id)).await?;
        outbox::commit(transaction, &self.pool).await?;
        tracing::info!(user_id = %user.id, "registered");
        Ok(user)
    }

    pub async fn login(&self, email: &str, password: &str) -> Result<Session, UserError> {
        if password.len() > MAX_PASSWORD * 4 {
            return Err(UserError::WrongCredentials);
        }
        let email = normalize_email(email);
        // Before any password is checked: a throttled try learns nothing, right or wrong.
        if let Some(wait) = throttle::remaining(&self.pool, &email).await? {
            return Err(UserError::Throttled(wait));
        }
        let user = store::user_by_email(&self.pool, &email).await?;
        // The same work whether or not the account exists: no enumeration by timing.
        let hash = user
            .as_ref()
            .map_or(self.dummy_hash.as_str(), |user| user.password_hash.as_str());
        let matches = self.hashers.verify(password, hash).await?;
        match user {
            Some(user) if matches => {
                throttle::clear(&self.pool, &email).await?;
                tracing::info!(user_id = %user.id, "signed in");
                self.start_session(&user).await
            }
            _ => {
                throttle::record_failure(&self.pool, &email).await?;
                Err(UserError::WrongCredentials)
            }
        }
    }

    async fn start_session(&self, user: &UserRow) -> Result<Session, UserError> {
        let refresh = OpaqueToken::generate();
        store::insert_refresh_token(
            &self.pool,
            &refresh.hash,
            Uuid::new_v4(),
            user.id,
            self.refresh_expiry(),
        )
        .await?;
        self.session(user, refresh.token)
    }

    fn session(&self, user: &UserRow, refresh_token: String) -> Result<Session, UserError> {
        let claims = self
            .tokens
            .claims(user.id.to_string(), role_of(user), self.tokens.access_ttl);
        Ok(Session {
            access_token: self.key.sign(&claims)?,
            access_ttl: self.tokens.access_ttl,
            refresh_token,
            refresh_ttl: self.tokens.refresh_ttl,
        })
    }

    fn refresh_expiry(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
            + chrono::Duration::from_std(self.tokens.refresh_ttl)
                .unwrap_or(chrono::Duration::days(30))
    }

    pub async fn refresh(&self, presented: &str) -> Result<Session, UserError> {
        let next = OpaqueToken::generate();
        let rotation = store::rotate_refresh_token(
            &self.pool,
            &OpaqueToken::hash_of(presented),
            &next.hash,
            self.refresh_expiry(),
        )
        .await?;
        match rotation {
            Rotation::Rotated { user_id } => {
                let user = store::user_by_id(&self.pool, user_id)
                    .await?
                    .filter(|user| !user.is_deleted())
                    .ok_or(UserError::RefreshRefused)?;
                self.session(&user, next.token)
            }
            Rotation::ReuseDetected => {
                tracing::warn!("refresh token reuse: the token family is revoked");
                Err(UserError::RefreshReused)
            }
            Rotation::Refused => Err(UserError::RefreshRefused),
        }
    }

    pub async fn logout(&self, refresh_token: &str) -> Result<(), UserError> {
        store::revoke_family_of(&self.pool, &OpaqueToken::hash_of(refresh_token)).await
    }

    /// A live account.
    pub async fn get(&self, id: Uuid) -> Result<UserRow, UserError> {
        store::user_by_id(&self.pool, id)
            .await?
            .filter(|user| !user.is_deleted())
            .ok_or(UserError::NotFound)
    }

    /// An account, deleted ones included (for admins: what is left of it).
    pub async fn get_any(&self, id: Uuid) -> Result<UserRow, UserError> {
        store::user_by_id(&self.pool, id)
            .await?
            .ok_or(UserError::NotFound)
    }

    pub async fn update(
        &self,
        caller: &Caller,
        id: Uuid,
        update: Update,
    ) -> Result<UserRow, UserError> {
        let target = self.get(id).await?;
        let own = caller.user_id().is_ok_and(|caller_id| caller_id == id);
        if update.role.is_some() && !caller.is_admin() {
            return Err(UserError::Forbidden(
                "only an admin may change roles".into(),
            ));
        }
        if update.role == Some(Role::Service) {
            return Err(UserError::Invalid("role must be customer or admin".into()));
        }
        // An admin demoting themselves could leave the shop with no admin at all.
        if own && caller.is_admin() && update.role == Some(Role::Customer) {
            return Err(UserError::Forbidden(
                "an admin cannot take away their own admin role; another admin can".into(),
            ));
        }
        let email = update.email.as_deref().map(valid_email).transpose()?;
        let email = email.filter(|email| *email != target.email);
        // A customer's new address must be proven first (POST /users/me/email); an admin who
        // changes one (a support case) leaves it unproven.
        if email.is_some() && !caller.is_admin() {
            return Err(UserError::Invalid(
                "the email is changed with POST /users/me/email, which proves the new address first"
                    .into(),
            ));
        }
        let mut changes = UserChanges {
            email_verified: email.as_ref().map(|_| false),
            email,
            name: update.name.as_deref().map(valid_name).transpose()?,
            phone: update
                .phone
                .map(|phone| phone.as_deref().map(valid_phone).transpose())
                .transpose()?,
            role: update.role.map(|role| role.as_str().to_owned()),
            password_hash: None,
        };
        if let Some(password) = &update.password {
            valid_password(password)?;
            // An admin may reset someone else's password; everyone else proves they know it.
            if own || !caller.is_admin() {
                let current = update
                    .current_password
                    .as_deref()
                    .ok_or(UserError::CurrentPasswordNeeded)?;
                if !self.hashers.verify(current, &target.password_hash).await? {
                    return Err(UserError::WrongCurrentPassword);
                }
            }
            changes.password_hash = Some(self.hashers.hash(password).await?);
        }
        let password_changed = changes.password_hash.is_some();
        let mut transaction = self.pool.begin().await?;
        let user = store::update_user(&mut *transaction, id, changes)
            .await?
            .ok_or(UserError::NotFound)?;
        let contact_changed =
            (&user.email, &user.name, &user.phone) != (&target.email, &target.name, &target.phone);
        if contact_changed {
            let trace_id = shop_web::request_id::trace_context();
            outbox::enqueue(&mut transaction, lifecycle::updated(&user), Some(&trace_id)).await?;
        }
        outbox::commit(transaction, &self.pool)
            .await
            .map_err(UserError::from_write)?;
        if password_changed {
            // Sessions that knew the old password end with it.
            store::revoke_all_of_user(&self.pool, id).await?;
            tracing::info!(user_id = %id, "password changed; sessions revoked");
        }
        Ok(user)
    }

    pub fn service_token(
        &self,
        client_id: &str,
        client_secret: &str,
    ) -> Result<(String, Duration), UserError> {
        // Compare digests, so the comparison time says nothing about the secret.
        let presented = Sha256::digest(client_secret.as_bytes());
        let known = self.service_clients.iter().any(|(id, secret)| {
            id == client_id && Sha256::digest(secret.expose().as_bytes()) == presented
        });
        if !known {
            tracing::warn!(client_id, "service token refused");
            return Err(UserError::WrongClient);
        }
        let ttl = self.tokens.service_ttl;
        let claims = self.tokens.claims(client_id.to_owned(), Role::Service, ttl);
        Ok((self.key.sign(&claims)?, ttl))
    }

    pub fn jwks(&self) -> jsonwebtoken::jwk::JwkSet {
        self.key.jwks()
    }
}

/// Creates the admin, or makes an existing account admin. `reset_password` also sets the password
/// of an existing account (`shop user create-admin`); at start it is left alone.
pub async fn ensure_admin(
    pool: &PgPool,
    email: &str,
    password: &str,
    reset_password: bool,
) -> Result<UserRow, UserError> {
    let email = valid_email(email)?;
    valid_password(password)?;
    let existing = store::user_by_email(pool, &email).await?;
    let hash_in_background = |password: String| async move {
        tokio::task::spawn_blocking(move || crate::password::hash_now(&password))
            .await
            .map_err(|error| UserError::Hashing(error.to_string()))?
    };
    match existing {
        None => {
            let password_hash = hash_in_background(password.to_owned()).await?;
            let created = store::insert_user(
                pool,
                NewUser {
                    email: &email,
                    name: "Administrator",
                    phone: None,
                    role: "admin",
                    password_hash: &password_hash,
                    email_verified: true,
                },
            )
            .await;
            match created {
                Ok(user) => Ok(user),
                // Another process created it at the same moment.
                Err(UserError::EmailTaken) => store::user_by_email(pool, &email)
                    .await?
                    .ok_or(UserError::NotFound),
                Err(error) => Err(error),
            }
        }
        Some(user) => {
            let password_hash = if reset_password {
                Some(hash_in_background(password.to_owned()).await?)
            } else {
                None
            };
            store::update_user(
                pool,
                user.id,
                UserChanges {
                    role: Some("admin".to_owned()),
                    password_hash,
                    ..UserChanges::default()
                },
            )
            .await?
            .ok_or(UserError::NotFound)
        }
    }
}

pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

pub(crate) fn valid_email(email: &str) -> Result<String, UserError> {
    let email = normalize_email(email);
    let options = Options::default()
        .with_required_tld()
        .without_display_text()
        .without_domain_literal();
    if email.len() > 254 || EmailAddress::parse_with_options(&email, options).is_err() {
        return Err(UserError::Invalid(
            "email must be an address like ada@example.com".into(),
        ));
    }
    Ok(email)
}

pub(crate) fn valid_password(password: &str) -> Result<(), UserError> {
    let length = password.chars().count();
    if !(MIN_PASSWORD..=MAX_PASSWORD).contains(&length) {
        return Err(UserError::Invalid(format!(
            "password must be {MIN_PASSWORD} to {MAX_PASSWORD} characters long"
        )));
    }
    Ok(())
}

fn valid_name(name: &str) -> Result<String, UserError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(UserError::Invalid(format!(
            "name must be 1 to {MAX_NAME} printable characters"
        )));
    }
    Ok(name.to_owned())
}

fn valid_phone(phone: &str) -> Result<String, UserError> {
    let phone = phone.trim();
    let digits = phone.strip_prefix('+').unwrap_or("");
    let valid = (7..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    if !valid {
        return Err(UserError::Invalid(
            "phone must be in E.164 form, like +4915112345678".into(),
        ));
    }
    Ok(phone.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_lowercased_and_must_look_like_addresses() {
        assert_eq!(
            valid_email("  Ada@Example.COM ").unwrap(),
            "ada@example.com"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@localhost",
            "Ada <ada@example.com>",
        ] {
            assert!(valid_email(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn passwords_are_8_to_128_characters() {
        assert!(valid_password("1234567").is_err());
        assert!(valid_password("12345678").is_ok());
        assert!(valid_password(&"x".repeat(128)).is_ok());
        assert!(valid_password(&"x".repeat(129)).is_err());
        // Characters, not bytes.
        assert!(valid_password("ääääääää").is_ok());
    }

    #[test]
    fn phones_are_e164() {
        assert_eq!(valid_phone(" +4915112345678 ").unwrap(), "+4915112345678");
        for bad in [
            "4915112345678",
            "+0123456789",
            "+49 151 123",
            "+12",
            "+1234567890123456",
        ] {
            assert!(valid_phone(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn names_are_printable_and_not_empty() {
        assert_eq!(valid_name("  Ada Lovelace ").unwrap(), "Ada Lovelace");
        assert!(valid_name("   ").is_err());
        assert!(valid_name("bell\u{7}").is_err());
        assert!(valid_name(&"n".repeat(101)).is_err());
    }
}
