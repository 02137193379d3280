//! The user service's REST API: accounts, sessions (login, refresh, logout), service tokens and
//! the JWKS.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi, param::Path};
use shop_web::{ApiError, BearerAuth, Role};
use uuid::Uuid;

use crate::accounts::{self, Accounts, Update};
use crate::store::UserRow;

pub struct UserApi {
    pub accounts: Arc<Accounts>,
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
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
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
            created_at: row.created_at,
            updated_at: row.updated_at,
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

    /// An account: the caller's own, or anyone's for an admin.
    #[oai(path = "/:id", method = "get", operation_id = "get_user")]
    async fn get_user(&self, auth: BearerAuth, id: Path<Uuid>) -> Result<Json<User>, ApiError> {
        auth.0.require_self_or_admin(id.0)?;
        Ok(Json(self.accounts.get(id.0).await?.into()))
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
