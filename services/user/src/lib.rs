//! The user service: accounts, credentials, access and refresh tokens, and the JWKS every other
//! service verifies tokens with.
//!
//! ```text
//! user                 supervisor, one-for-one, at most 5 restarts in 30 s
//! ├── user.hasher      pool (ractor factory) of argon2id workers, one per core   permanent
//! │   └── worker × N
//! ├── user.http        poem server: /users/*, /health, /ready, /metrics, /admin/tree   permanent
//! ├── user.resets      mails password reset links after the request was answered        permanent
//! ├── user.bridge      Kafka: publishes (it consumes nothing)                           permanent
//! └── user.outbox      publishes the outbox's rows (UserRegistered, UserUpdated,
//!                      UserDeleted, AccountMailRequested) through the bridge             permanent
//! ```
//!
//! PostgreSQL database `shop_user` (migrations in `migrations/`, applied at start). No actor owns
//! account rows: each request is one transaction, and the database's constraints arbitrate
//! between concurrent requests.

mod accounts;
mod addresses;
mod error;
mod export;
mod http;
mod lifecycle;
mod password;
mod resets;
mod store;
mod throttle;
mod tokens;

use std::net::SocketAddr;
use std::sync::Arc;

use shop_actors::{Child, Intensity, Restart, Service, SupervisorSpec};
use shop_config::{Environment, Settings};
use shop_web::server::Shutdown;
use shop_web::{ServiceWeb, TokenVerifier, postgres};
use sqlx::PgPool;

pub use accounts::{MAX_PASSWORD, MIN_PASSWORD};
pub use error::UserError;
pub use password::{Hasher, hash_now, verify_now};
pub use tokens::{KeyError, SigningKey};

pub const SERVICE: &str = "user";
pub const DATABASE: &str = "shop_user";
const ROOT: &str = "user";
const HASHER: &str = "user.hasher";
const HTTP: &str = "user.http";
const RESETS: &str = "user.resets";
const BRIDGE: &str = "user.bridge";
const OUTBOX: &str = "user.outbox";

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Database(#[from] postgres::DatabaseError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("the admin account from SHOP_ADMIN_EMAIL: {0}")]
    Admin(UserError),
    #[error("starting the supervision tree: {0}")]
    Spawn(#[from] ractor::SpawnErr),
    #[error("the signing key: {0}")]
    Jwk(#[from] jsonwebtoken::errors::Error),
    #[error("the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Creates and migrates `shop_user`.
pub async fn migrate(settings: &Settings) -> Result<PgPool, StartError> {
    Ok(postgres::connect(
        &settings.postgres,
        DATABASE,
        &[&store::MIGRATOR, &shop_bridge::migrator()],
    )
    .await?)
}

/// `shop user create-admin`: creates the admin, or promotes the account and sets its password.
pub async fn create_admin(
    settings: &Settings,
    email: &str,
    password: &str,
) -> Result<uuid::Uuid, StartError> {
    let pool = migrate(settings).await?;
    let admin = accounts::ensure_admin(&pool, email, password, true)
        .await
        .map_err(StartError::Admin)?;
    Ok(admin.id)
}

/// Starts the user service's supervision tree.
pub async fn start(settings: &Settings, shutdown: Shutdown) -> Result<Service, StartError> {
    let pool = migrate(settings).await?;
    let key = SigningKey::load_or_generate(
        &settings.user.signing_key_file,
        settings.environment == Environment::Dev,
    )?;
    if let Some(admin) = &settings.user.admin {
        accounts::ensure_admin(&pool, &admin.email, admin.password.expose(), false)
            .await
            .map_err(StartError::Admin)?;
    }
    let verifier = Arc::new(TokenVerifier::with_local_keys(
        &settings.auth.issuer,
        &settings.auth.audience,
        [(key.kid().to_owned(), key.decoding_key()?)],
    ));
    let dummy_hash = tokio::task::spawn_blocking(|| password::hash_now("no such account"))
        .await
        .map_err(|error| StartError::Admin(UserError::Hashing(error.to_string())))?
        .map_err(StartError::Admin)?;
    let accounts = Arc::new(accounts::Accounts {
        pool: pool.clone(),
        hashers: password::Hashers::new(HASHER, settings.http.actor_timeout),
        key,
        tokens: tokens::TokenPolicy {
            issuer: settings.auth.issuer.clone(),
            audience: settings.auth.audience.clone(),
            access_ttl: settings.user.access_token_ttl,
            refresh_ttl: settings.user.refresh_token_ttl,
            service_ttl: settings.user.service_token_ttl,
        },
        service_clients: settings.user.service_clients.clone(),
        dummy_hash,
        lifecycle: accounts::LifecyclePolicy {
            verification_ttl: settings.user.email_verification_ttl,
            reset_ttl: settings.user.password_reset_ttl,
        },
    });
    let base = |url: &shop_config::Url| url.as_str().trim_end_matches('/').to_owned();
    let exporter = Arc::new(export::Exporter {
        http: reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()?,
        cart_url: base(&settings.cart.url),
        order_url: base(&settings.order.url),
        payment_url: base(&settings.payment.url),
        notification_url: base(&settings.notification.url),
    });
    let reset_accounts = accounts.clone();

    let web = ServiceWeb {
        service: SERVICE,
        title: "Shop user service",
        root_actor: ROOT.to_owned(),
        verifier,
        readiness: postgres::readiness(pool.clone()),
        body_limit: settings.http.body_limit,
        instance: settings.instance.clone(),
        trace_store: settings.tracing.query_url.clone(),
    };
    let addr = SocketAddr::new(settings.http.bind_host, settings.user.port);
    let grace = settings.http.shutdown_grace;
    let address_pool = pool.clone();
    let routes: shop_web::RouteFactory = Arc::new(move || {
        web.endpoint(
            (
                http::UserApi {
                    accounts: accounts.clone(),
                    exporter: exporter.clone(),
                    resets: RESETS,
                },
                addresses::AddressesApi {
                    pool: address_pool.clone(),
                },
            ),
            "/users",
        )
    });

    let tree = SupervisorSpec::new(ROOT)
        .intensity(Intensity::default())
        .child(password::pool_child(
            HASHER,
            settings.user.hasher_workers,
            settings.user.hasher_queue,
        ))
        .child(shop_web::server::child(
            HTTP, SERVICE, addr, routes, shutdown, grace,
        ))
        .child(Child::actor(
            RESETS,
            "mailer",
            Restart::Permanent,
            move || (resets::Resets, reset_accounts.clone()),
        ))
        .child(shop_bridge::bridge_child(
            BRIDGE,
            SERVICE,
            &settings.kafka,
            shop_bridge::Subscriptions::new(),
        ))
        .child(shop_bridge::relay_child(
            OUTBOX,
            pool,
            BRIDGE,
            &settings.kafka,
        ));
    Ok(shop_actors::service::start(tree).await?)
}
