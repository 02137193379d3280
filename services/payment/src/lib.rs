//! The payment service: one charge per order through a Stripe-compatible provider, refunds, and
//! Stripe's signed webhooks.
//!
//! ```text
//! payment                  supervisor, one-for-one, at most 5 restarts in 30 s
//! ├── payment.http         poem server: /payments/*, /health, /ready, /metrics, /admin/tree  permanent
//! ├── payment.registry     starts payment actors on demand, passivates idle ones             permanent
//! │   └── payment:<order> × N  one per payment in flight; reloaded from the database when
//! │                            it fails (at most 3 times in 10 s)                          transient
//! ├── payment.orders       hands OrderPlaced/OrderCancelled to their payment's actor         permanent
//! ├── payment.sweeper      wakes payments with work left that no actor holds                 permanent
//! ├── payment.bridge       Kafka: hears shop.orders, publishes shop.payments                 permanent
//! └── payment.outbox       publishes the payment events of the outbox through the bridge     permanent
//! ```
//!
//! PostgreSQL database `shop_payment`. A payment is recorded (unique per order) before the
//! provider hears of it, every attempt carries the same idempotency key, and the outcome is
//! stored with its event in one transaction: an order is charged once and its outcome published
//! once, whatever is redelivered, retried or restarted.

pub mod actor;
mod error;
mod http;
mod metrics;
mod payments;
pub mod provider;
pub mod state;
pub mod store;
pub mod webhook;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use shop_actors::entities::{self, EntityKind};
use shop_actors::sweeper::Sweeper;
use shop_actors::{Child, Intensity, Restart, Service, SupervisorSpec};
use shop_bridge::{EntityRouter, RouterArgs, Subscriber, Subscriptions};
use shop_config::{PaymentProvider, Settings};
use shop_schemas::{OrderCancelled, OrderPlaced};
use shop_web::server::Shutdown;
use shop_web::{ServiceWeb, TokenVerifier, postgres};
use sqlx::PgPool;

pub use error::PaymentError;
use provider::{Provider, Simulated, StripeClient};

pub const SERVICE: &str = "payment";
pub const DATABASE: &str = "shop_payment";
const ROOT: &str = "payment";
const HTTP: &str = "payment.http";
const REGISTRY: &str = "payment.registry";
const ORDERS: &str = "payment.orders";
const SWEEPER: &str = "payment.sweeper";
const BRIDGE: &str = "payment.bridge";
const OUTBOX: &str = "payment.outbox";

/// How often the sweeper looks for payments with work left.
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Database(#[from] postgres::DatabaseError),
    #[error("the Stripe client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("starting the supervision tree: {0}")]
    Spawn(#[from] ractor::SpawnErr),
}

/// Creates and migrates `shop_payment`.
pub async fn migrate(settings: &Settings) -> Result<PgPool, StartError> {
    Ok(postgres::connect(
        &settings.postgres,
        DATABASE,
        &[&store::MIGRATOR, &shop_bridge::migrator()],
    )
    .await?)
}

/// The provider the settings choose.
pub fn provider(settings: &Settings, pool: PgPool) -> Result<Provider, StartError> {
    let payment = &settings.payment;
    Ok(match payment.provider {
        PaymentProvider::Simulated => Provider::Simulated(Simulated::new(
            pool,
            payment.simulated_latency,
            payment.test_hooks,
        )),
        PaymentProvider::Stripe => Provider::Stripe(StripeClient::new(
            payment.stripe_api_base.as_str(),
            payment
                .stripe_secret_key
                .as_ref()
                .map(shop_config::Secret::expose)
                .unwrap_or_default(),
        )?),
    })
}

/// Starts the payment service's supervision tree.
pub async fn start(settings: &Settings, shutdown: Shutdown) -> Result<Service, StartError> {
    let pool = migrate(settings).await?;
    let provider = provider(settings, pool.clone())?;
    tracing::info!(provider = provider.name(), "payment provider");
    for mismatch in ["intent", "amount", "currency"] {
        metrics::WEBHOOKS_REFUSED.with_label_values(&[mismatch]);
    }
    if settings.environment == shop_config::Environment::Staging
        && settings.payment.provider == PaymentProvider::Simulated
    {
        tracing::warn!(
            "SHOP_ENV=staging with the simulated payment provider: orders are paid without taking any money; never let real customers reach this"
        );
    }
    let payments = payments::Payments::new(
        payments::PaymentKind::KIND,
        REGISTRY,
        settings.http.actor_timeout,
    );

    let web = ServiceWeb {
        service: SERVICE,
        title: "Shop payment service",
        root_actor: ROOT.to_owned(),
        verifier: Arc::new(TokenVerifier::for_service(&settings.auth)),
        readiness: postgres::readiness(pool.clone()),
        body_limit: settings.http.body_limit,
        instance: settings.instance.clone(),
        trace_store: settings.tracing.query_url.clone(),
    };
    let (api_pool, api_payments) = (pool.clone(), payments.clone());
    let webhook_secret = settings.payment.stripe_webhook_secret.expose().to_owned();
    let routes: shop_web::RouteFactory = Arc::new(move || {
        web.endpoint(
            http::PaymentsApi {
                pool: api_pool.clone(),
                payments: api_payments.clone(),
                webhook_secret: webhook_secret.clone(),
            },
            "/payments",
        )
    });
    let addr = SocketAddr::new(settings.http.bind_host, settings.payment.port);

    let to_payments = Subscriber::deliveries(ORDERS);
    let subscriptions = Subscriptions::new()
        .on::<OrderPlaced>(to_payments.clone())
        .on::<OrderCancelled>(to_payments);

    let kind = payments::PaymentKind {
        pool: pool.clone(),
        provider,
        max_attempts: settings.payment.max_attempts,
        instance: settings.instance.as_str().into(),
    };
    let instance = kind.instance.clone();
    let order_payments = payments.clone();
    let sweeper_pool = pool.clone();
    let tree = SupervisorSpec::new(ROOT)
        .intensity(Intensity::default())
        .child(shop_web::server::child(
            HTTP,
            SERVICE,
            addr,
            routes,
            shutdown,
            settings.http.shutdown_grace,
        ))
        .child(entities::registry_child(
            REGISTRY,
            kind,
            payments.clone(),
            entities::Idleness::passivate_after(settings.payment.idle_timeout),
        ))
        .child(Child::actor(
            ORDERS,
            "router",
            Restart::Permanent,
            move || {
                let args = RouterArgs {
                    entities: order_payments.clone(),
                    wrap: actor::PaymentMsg::Event,
                };
                (EntityRouter::default(), args)
            },
        ))
        .child(Child::actor(
            SWEEPER,
            "timer",
            Restart::Permanent,
            move || {
                let args = payments::sweeper(
                    sweeper_pool.clone(),
                    payments.clone(),
                    SWEEP_INTERVAL,
                    instance.clone(),
                );
                (Sweeper::default(), args)
            },
        ))
        .child(shop_bridge::bridge_child(
            BRIDGE,
            SERVICE,
            &settings.kafka,
            subscriptions,
        ))
        .child(shop_bridge::relay_child(
            OUTBOX,
            pool,
            BRIDGE,
            &settings.kafka,
        ));
    Ok(shop_actors::service::start(tree).await?)
}
