//! Verifying access tokens. The user service signs them with an Ed25519 key; every service checks
//! them with public keys only, so no service but the user service can mint one.
//!
//! Pinned algorithm (EdDSA): `alg: none`, HMAC signed with the public key, and any other algorithm
//! are refused before a key is even looked up. `exp`, `nbf`, `iss` and `aud` are checked.

use std::collections::HashMap;
use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use poem::Request;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::jwks::JwksCache;
use crate::problem::ApiError;

/// The only signing algorithm Shop accepts.
pub const ALGORITHM: Algorithm = Algorithm::EdDSA;

/// Clock skew tolerated on `exp` and `nbf`, in seconds.
const LEEWAY_SECS: u64 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Customer,
    Admin,
    /// Another Shop service, calling with a service token.
    Service,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Admin => "admin",
            Role::Service => "service",
        }
    }
}

/// The claims of a Shop access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id (or the service client id for service tokens).
    pub sub: String,
    pub role: Role,
    pub exp: u64,
    pub iat: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    pub iss: String,
    pub aud: String,
    pub jti: String,
}

/// Why a token was refused. The message is safe to send back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token is not signed with EdDSA")]
    WrongAlgorithm,
    #[error("the token is signed with an unknown key")]
    UnknownKey,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token is for another audience")]
    WrongAudience,
    #[error("the token is from another issuer")]
    WrongIssuer,
    #[error("the token's signature is invalid")]
    BadSignature,
}

enum Keys {
    /// The user service's own keys, by kid.
    Local(HashMap<String, DecodingKey>),
    /// Every other service: the user service's JWKS, fetched and cached.
    Jwks(JwksCache),
}

/// Checks tokens; shared by every request of a service.
pub struct TokenVerifier {
    keys: Keys,
    validation: Validation,
}

impl TokenVerifier {
    pub fn with_local_keys(
        issuer: &str,
        audience: &str,
        keys: impl IntoIterator<Item = (String, DecodingKey)>,
    ) -> Self {
        Self {
            keys: Keys::Local(keys.into_iter().collect()),
            validation: validation(issuer, audience),
        }
    }

    pub fn with_jwks(issuer: &str, audience: &str, jwks: JwksCache) -> Self {
        Self {
            keys: Keys::Jwks(jwks),
            validation: validation(issuer, audience),
        }
    }

    /// What every service but the user service verifies with: the user service's JWKS.
    pub fn for_service(settings: &shop_config::AuthSettings) -> Self {
        let jwks_url = format!(
            "{}/users/.well-known/jwks.json",
            settings.user_service_url.as_str().trim_end_matches('/')
        );
        Self::with_jwks(
            &settings.issuer,
            &settings.audience,
            JwksCache::new(jwks_url, reqwest::Client::new()),
        )
    }

    pub async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|error| {
            match error.kind() {
                // `alg: none`, `HS256`, … parse as an unknown or refused algorithm.
                jsonwebtoken::errors::ErrorKind::Json(_) => TokenError::WrongAlgorithm,
                _ => TokenError::Malformed,
            }
        })?;
        if header.alg != ALGORITHM {
            return Err(TokenError::WrongAlgorithm);
        }
        let kid = header.kid.ok_or(TokenError::UnknownKey)?;
        let key = match &self.keys {
            Keys::Local(keys) => keys.get(&kid).cloned(),
            Keys::Jwks(jwks) => jwks.key(&kid).await,
        }
        .ok_or(TokenError::UnknownKey)?;
        jsonwebtoken::decode::<Claims>(token, &key, &self.validation)
            .map(|data| data.claims)
            .map_err(|error| {
                use jsonwebtoken::errors::ErrorKind;
                match error.kind() {
                    ErrorKind::ExpiredSignature => TokenError::Expired,
                    ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                    ErrorKind::InvalidAudience => TokenError::WrongAudience,
                    ErrorKind::InvalidIssuer => TokenError::WrongIssuer,
                    ErrorKind::InvalidSignature => TokenError::BadSignature,
                    ErrorKind::InvalidAlgorithm => TokenError::WrongAlgorithm,
                    _ => TokenError::Malformed,
                }
            })
    }
}

fn validation(issuer: &str, audience: &str) -> Validation {
    let mut validation = Validation::new(ALGORITHM);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    validation.validate_nbf = true;
    validation.leeway = LEEWAY_SECS;
    validation
}

/// Who is calling: the verified claims of the bearer token.
#[derive(Debug, Clone)]
pub struct Caller(pub Claims);

impl Caller {
    pub fn role(&self) -> Role {
        self.0.role
    }

    pub fn is_admin(&self) -> bool {
        self.0.role == Role::Admin
    }

    /// The caller's user id; service tokens have none.
    pub fn user_id(&self) -> Result<Uuid, ApiError> {
        match self.0.role {
            Role::Customer | Role::Admin => Uuid::parse_str(&self.0.sub)
                .map_err(|_| ApiError::unauthorized("the token's subject is not a user")),
            Role::Service => Err(ApiError::forbidden("a service token has no user")),
        }
    }

    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::forbidden("only an admin may do this"))
        }
    }

    pub fn require_service(&self) -> Result<(), ApiError> {
        if self.0.role == Role::Service {
            Ok(())
        } else {
            Err(ApiError::forbidden("only a Shop service may do this"))
        }
    }

    /// A customer reaches only their own resources; an admin reaches anyone's.
    pub fn require_self_or_admin(&self, user_id: Uuid) -> Result<(), ApiError> {
        if self.is_admin() || self.user_id().is_ok_and(|id| id == user_id) {
            Ok(())
        } else {
            Err(ApiError::forbidden("this belongs to another user"))
        }
    }
}

/// `Authorization: Bearer <access token>` in every service's OpenAPI operations.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", bearer_format = "JWT", checker = "check_bearer")]
pub struct BearerAuth(pub Caller);

async fn check_bearer(request: &Request, bearer: Bearer) -> poem::Result<Caller> {
    Ok(verify(request, &bearer.token).await?)
}

/// The caller of a plain (non-OpenAPI) handler, from its `Authorization: Bearer` header.
pub async fn caller_from_header(request: &Request) -> Result<Caller, ApiError> {
    let token = request
        .headers()
        .get(poem::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError::unauthorized("a bearer token is required"))?;
    verify(request, token).await
}

async fn verify(request: &Request, token: &str) -> Result<Caller, ApiError> {
    let verifier = request
        .data::<Arc<TokenVerifier>>()
        .ok_or_else(|| ApiError::internal(&"no token verifier in the request data"))?;
    match verifier.verify(token).await {
        Ok(claims) => Ok(Caller(claims)),
        Err(error) => {
            tracing::info!(reason = %error, "token refused");
            Err(ApiError::unauthorized(error.to_string()))
        }
    }
}
