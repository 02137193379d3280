//! The user service's REST API: accounts, sessions (login, refresh, logout), service tokens and
//! the JWKS.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi, param::Path};
use shop_web::{ApiError, BearerAuth, Paging, Role};
use uuid::Uuid;

use crate::accounts::{self, Accounts, Update};
use crate::export::Exporter;
use crate::store::{self, UserFilter, UserRow};

pub struct UserApi {
    pub accounts: Arc<Accounts>,
    pub exporter: Arc<Exporter>,
    /// The name of the actor that mails reset links.
    pub resets: &'static str,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct TokenBody {
    /// The token from the mail's link.
    token: String,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct ResetRequest {
    email: String,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct ResetConfirmation {
    /// The token from the reset mail's link.
    token: String,
    /// The new password: 8 to 128 characters.
    password: String,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct EmailChange {
    /// The new address; the account keeps its current one until the link mailed here is used.
    email: String,
    current_password: String,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct Deletion {
    /// The account's password.
    password: String,
}

/// A mail with a link is on its way.
#[derive(Debug, Object)]
struct MailSent {
    /// Where it goes.
    email: String,
    /// When its link stops working.
    expires_at: DateTime<Utc>,
}

#[derive(Debug, Object)]
struct UserPage {
    items: Vec<User>,
    page: u32,
    per_page: u32,
    /// Accounts matching the filters, on all pages.
    total: i64,
}

#[derive(ApiResponse)]
enum Accepted {
    /// Accepted: a mail goes out if there is an account to send it to.
    #[oai(status = 202)]
    Accepted,
}

#[derive(ApiResponse)]
enum MailAccepted {
    /// The mail is on its way.
    #[oai(status = 202)]
    Sent(Json<MailSent>),
}

#[derive(ApiResponse)]
enum Done {
    /// Done.
    #[oai(status = 204)]
    Done,
}

/// A new account.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct Registration {
    email: String,
    /// 8 to 128 characters.
    password: String,
    name: String,
    /// E.164, e.g. +4915112345678; used for SMS notifications.
    phone: Option<String>,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct Credentials {
    email: String,
    password: String,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct RefreshRequest {
    refresh_token: String,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct ServiceCredentials {
    client_id: String,
    client_secret: String,
}

/// A change to an account; absent fields stay as they are.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct UserUpdate {
    email: Option<String>,
    name: Option<String>,
    /// `null` removes the phone number.
    phone: MaybeUndefined<String>,
    /// A new password; needs `current_password` unless an admin sets another user's.
    password: Option<String>,
    current_password: Option<String>,
    /// Admins only.
    role: Option<UserRole>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
enum UserRole {
    Customer,
    Admin,
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
struct User {
    id: Uuid,
    email: String,
    name: String,
    phone: Option<String>,
    role: UserRole,
    /// The email address was proven (by the link mailed to it).
    email_verified: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// Deleted accounts keep only this (admins see them).
    deleted_at: Option<DateTime<Utc>>,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        let role = match accounts::role_of(&row) {
            Role::Admin => UserRole::Admin,
            _ => UserRole::Customer,
        };
        Self {
            id: row.id,
            email: row.email,
            name: row.name,
            phone: row.phone,
            role,
            email_verified: row.email_verified_at.is_some(),
            created_at: row.created_at,
            updated_at: row.updated_at,
            deleted_at: row.deleted_at,
        }
    }
}

/// An access token and the refresh token that renews it.
#[derive(Debug, Object)]
struct TokenPair {
    access_token: String,
    /// Always `Bearer`.
    token_type: String,
    /// Seconds until the access token expires.
    expires_in: u64,
    refresh_token: String,
    /// Seconds until the refresh token expires.
    refresh_expires_in: u64,
}

impl From<accounts::Session> for TokenPair {
    fn from(session: accounts::Session) -> Self {
        Self {
            access_token: session.access_token,
            token_type: "Bearer".to_owned(),
            expires_in: session.access_ttl.as_secs(),
            refresh_token: session.refresh_token,
            refresh_expires_in: session.refresh_ttl.as_secs(),
        }
    }
}

#[derive(Debug, Object)]
struct ServiceToken {
    access_token: String,
    token_type: String,
    expires_in: u64,
}

#[derive(ApiResponse)]
enum Registered {
    /// The account was created.
    #[oai(status = 201)]
    Created(Json<User>, #[oai(header = "Location")] String),
}

#[derive(ApiResponse)]
enum LoggedOut {
    /// The session (the refresh token's family) is signed out.
    #[oai(status = 204)]
    Done,
}

#[OpenApi(prefix_path = "/users", tag = "UserTag::Users")]
impl UserApi {
    /// Create a customer account.
    #[oai(path = "/register", method = "post", operation_id = "register")]
    async fn register(&self, body: Json<Registration>) -> Result<Registered, ApiError> {
        let body = body.0;
        let user = self
            .accounts
            .register(
                &body.email,
                &body.password,
                &body.name,
                body.phone.as_deref(),
            )
            .await?;
        let location = format!("/users/{}", user.id);
        Ok(Registered::Created(Json(user.into()), location))
    }

    /// Sign in: an access token (short-lived) and a refresh token.
    #[oai(path = "/login", method = "post", operation_id = "login")]
    async fn login(&self, body: Json<Credentials>) -> Result<Json<TokenPair>, ApiError> {
        let session = self.accounts.login(&body.email, &body.password).await?;
        Ok(Json(session.into()))
    }

    /// Trade a refresh token for a new pair. Each refresh token works once; presenting one
    /// again signs out every session that descends from the same login.
    #[oai(path = "/refresh", method = "post", operation_id = "refresh")]
    async fn refresh(&self, body: Json<RefreshRequest>) -> Result<Json<TokenPair>, ApiError> {
        let session = self.accounts.refresh(&body.refresh_token).await?;
        Ok(Json(session.into()))
    }

    /// Sign out the session of a refresh token.
    #[oai(path = "/logout", method = "post", operation_id = "logout")]
    async fn logout(&self, body: Json<RefreshRequest>) -> Result<LoggedOut, ApiError> {
        self.accounts.logout(&body.refresh_token).await?;
        Ok(LoggedOut::Done)
    }

    /// The caller's own account.
    #[oai(path = "/me", method = "get", operation_id = "me")]
    async fn me(&self, auth: BearerAuth) -> Result<Json<User>, ApiError> {
        let id = auth.0.user_id()?;
        Ok(Json(self.accounts.get(id).await?.into()))
    }

    /// An account: the caller's own, or anyone's for an admin (deleted ones too).
    #[oai(path = "/:id", method = "get", operation_id = "get_user")]
    async fn get_user(&self, auth: BearerAuth, id: Path<Uuid>) -> Result<Json<User>, ApiError> {
        auth.0.require_self_or_admin(id.0)?;
        let user = if auth.0.is_admin() {
            self.accounts.get_any(id.0).await?
        } else {
            self.accounts.get(id.0).await?
        };
        Ok(Json(user.into()))
    }

    /// Every account (admin), oldest first; filter by a fragment of the email, role, whether
    /// the email is verified and whether the account is deleted (default: live accounts only).
    #[oai(path = "/", method = "get", operation_id = "list_users")]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        auth: BearerAuth,
        /// Part of the email, any case.
        email: Query<Option<String>>,
        role: Query<Option<UserRole>>,
        verified: Query<Option<bool>>,
        /// `true`: deleted accounts only; `false` (the default): live ones only.
        deleted: Query<Option<bool>>,
        page: Query<Option<u32>>,
        per_page: Query<Option<u32>>,
    ) -> Result<Json<UserPage>, ApiError> {
        auth.0.require_admin()?;
        let paging = Paging::new(page.0, per_page.0)?;
        if email
            .0
            .as_ref()
            .is_some_and(|email| email.chars().count() > 254 || email.chars().any(char::is_control))
        {
            return Err(ApiError::unprocessable(
                "email is at most 254 printable characters",
            ));
        }
        let filter = UserFilter {
            email: email.0.map(|email| email.trim().to_lowercase()),
            role: role.0.map(|role| match role {
                UserRole::Customer => "customer",
                UserRole::Admin => "admin",
            }),
            verified: verified.0,
            deleted: deleted.0.unwrap_or(false),
        };
        let (rows, total) = store::list_users(&self.accounts.pool, &filter, paging).await?;
        Ok(Json(UserPage {
            items: rows.into_iter().map(User::from).collect(),
            page: paging.page,
            per_page: paging.per_page,
            total,
        }))
    }

    /// Prove the caller's email address with the token from the mailed link. For an email
    /// change, the account takes the new address now. A used, expired, unknown or another
    /// account's token is 400.
    #[oai(path = "/verify-email", method = "post", operation_id = "verify_email")]
    async fn verify_email(
        &self,
        auth: BearerAuth,
        body: Json<TokenBody>,
    ) -> Result<Json<User>, ApiError> {
        let user_id = auth.0.user_id()?;
        let user = self.accounts.verify_email(user_id, &body.0.token).await?;
        Ok(Json(user.into()))
    }

    /// Mail the caller another verification link (at most 3 in 15 minutes).
    #[oai(
        path = "/me/verification",
        method = "post",
        operation_id = "resend_verification"
    )]
    async fn resend_verification(&self, auth: BearerAuth) -> Result<MailAccepted, ApiError> {
        let user_id = auth.0.user_id()?;
        let expires_at = self.accounts.resend_verification(user_id).await?;
        let user = self.accounts.get(user_id).await?;
        Ok(MailAccepted::Sent(Json(MailSent {
            email: user.email,
            expires_at,
        })))
    }

    /// Change the caller's email: a link to the new address (which takes effect once it is
    /// used) and a notice to the current one.
    #[oai(path = "/me/email", method = "post", operation_id = "change_email")]
    async fn change_email(
        &self,
        auth: BearerAuth,
        body: Json<EmailChange>,
    ) -> Result<MailAccepted, ApiError> {
        let user_id = auth.0.user_id()?;
        let body = body.0;
        let expires_at = self
            .accounts
            .request_email_change(user_id, &body.email, &body.current_password)
            .await?;
        Ok(MailAccepted::Sent(Json(MailSent {
            email: accounts::normalize_email(&body.email),
            expires_at,
        })))
    }

    /// Ask for a password reset link. Always 202, whether an account has the address or not;
    /// at most 3 mails an hour per address and per account.
    #[oai(
        path = "/password-reset",
        method = "post",
        operation_id = "request_password_reset"
    )]
    async fn request_password_reset(&self, body: Json<ResetRequest>) -> Result<Accepted, ApiError> {
        let email = body.0.email;
        accounts::valid_email(&email)?;
        crate::resets::request(self.resets, email)?;
        Ok(Accepted::Accepted)
    }

    /// Set a new password with the token from the reset mail. Every session of the account
    /// ends. A used, expired or unknown token is 400.
    #[oai(
        path = "/password-reset/confirm",
        method = "post",
        operation_id = "confirm_password_reset"
    )]
    async fn confirm_password_reset(
        &self,
        body: Json<ResetConfirmation>,
    ) -> Result<Done, ApiError> {
        let body = body.0;
        self.accounts
            .confirm_password_reset(&body.token, &body.password)
            .await?;
        Ok(Done::Done)
    }

    /// Everything the shop holds about the caller, as one document: profile, addresses, cart,
    /// orders, payments (no card data is kept), notifications and their preferences.
    #[oai(path = "/me/export", method = "get", operation_id = "export_me")]
    async fn export(&self, auth: BearerAuth) -> Result<Json<serde_json::Value>, ApiError> {
        let user_id = auth.0.user_id()?;
        Ok(Json(self.exporter.export(&self.accounts, user_id).await?))
    }

    /// Delete the caller's account (password required). Orders not yet shipped are cancelled
    /// (a paid one is refunded); orders and payments stay for the books with the personal
    /// data replaced; the email may register again.
    #[oai(path = "/me", method = "delete", operation_id = "delete_me")]
    async fn delete_me(&self, auth: BearerAuth, body: Json<Deletion>) -> Result<Done, ApiError> {
        let user_id = auth.0.user_id()?;
        self.accounts.delete_own(user_id, &body.0.password).await?;
        Ok(Done::Done)
    }

    /// Delete a customer's account (admin), as `DELETE /users/me` does. An admin account is
    /// demoted first.
    #[oai(path = "/:id", method = "delete", operation_id = "delete_user")]
    async fn delete_user(&self, auth: BearerAuth, id: Path<Uuid>) -> Result<Done, ApiError> {
        auth.0.require_admin()?;
        let user = self.accounts.get(id.0).await?;
        if accounts::role_of(&user) == Role::Admin {
            return Err(ApiError::new(
                shop_web::ProblemKind::Conflict,
                "an admin account is demoted before it is deleted",
            ));
        }
        self.accounts.delete(id.0, true).await?;
        Ok(Done::Done)
    }

    /// Change an account: the caller's own, or anyone's for an admin.
    #[oai(path = "/:id", method = "put", operation_id = "update_user")]
    async fn update_user(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
        body: Json<UserUpdate>,
    ) -> Result<Json<User>, ApiError> {
        let caller = auth.0;
        caller.require_self_or_admin(id.0)?;
        let body = body.0;
        let update = Update {
            email: body.email,
            name: body.name,
            phone: match body.phone {
                MaybeUndefined::Undefined => None,
                MaybeUndefined::Null => Some(None),
                MaybeUndefined::Value(phone) => Some(Some(phone)),
            },
            password: body.password,
            current_password: body.current_password,
            role: body.role.map(|role| match role {
                UserRole::Customer => Role::Customer,
                UserRole::Admin => Role::Admin,
            }),
        };
        let user = self.accounts.update(&caller, id.0, update).await?;
        Ok(Json(user.into()))
    }

    /// A short-lived token with role `service`, for another Shop service.
    #[oai(
        path = "/service-token",
        method = "post",
        operation_id = "service_token"
    )]
    async fn service_token(
        &self,
        body: Json<ServiceCredentials>,
    ) -> Result<Json<ServiceToken>, ApiError> {
        let (token, ttl) = self
            .accounts
            .service_token(&body.client_id, &body.client_secret)?;
        Ok(Json(ServiceToken {
            access_token: token,
            token_type: "Bearer".to_owned(),
            expires_in: ttl.as_secs(),
        }))
    }

    /// The public keys access tokens are signed with (RFC 7517).
    #[oai(path = "/.well-known/jwks.json", method = "get", operation_id = "jwks")]
    async fn jwks(&self) -> Result<Json<serde_json::Value>, ApiError> {
        serde_json::to_value(self.accounts.jwks())
            .map(Json)
            .map_err(|error| ApiError::internal(&error))
    }
}

#[derive(poem_openapi::Tags)]
enum UserTag {
    /// Accounts, sessions and keys
    Users,
}
