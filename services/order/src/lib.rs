//! The order service: checkout, and one state-machine actor per open order.
//!
//! ```text
//! order                  supervisor, one-for-one, at most 5 restarts in 30 s
//! ├── order.http         poem server: /orders/*, /health, /ready, /metrics, /admin/tree   permanent
//! ├── order.registry     starts order actors on demand, passivates idle ones              permanent
//! │   └── order:<id> × N   one per open order; reloaded from the database when it
//! │                        fails (at most 3 times in 10 s)                                transient
//! ├── order.payments     hands PaymentSucceeded/Failed/Refunded to their order's actor    permanent
//! ├── order.customers    UserDeleted: cancels the customer's open orders (through their
//! │                      actors) and anonymises all of them                               permanent
//! ├── order.overdue      wakes pending orders past their payment time                     permanent
//! ├── order.bridge       Kafka: hears shop.payments and shop.users, publishes shop.orders permanent
//! └── order.outbox       publishes the order events of the outbox through the bridge      permanent
//! ```
//!
//! PostgreSQL database `shop_order`. An order's actor is its only writer: each transition is
//! one transaction (state guarded by version, history row, event in the outbox, the causing
//! event's id in the inbox), answered once it is committed.

mod actor;
mod checkout;
mod customers;
mod error;
mod http;
mod orders;
mod pricing;
pub mod state;
mod store;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use shop_actors::entities::{self, EntityKind};
use shop_actors::sweeper::Sweeper;
use shop_actors::{Child, Intensity, Restart, Service, SupervisorSpec};
use shop_bridge::{EntityRouter, RouterArgs, Subscriber, Subscriptions};
use shop_config::Settings;
use shop_schemas::{PaymentFailed, PaymentRefunded, PaymentSucceeded, UserDeleted};
use shop_web::server::Shutdown;
use shop_web::{ServiceTokens, ServiceWeb, TokenVerifier, postgres};
use sqlx::PgPool;

pub use error::OrderError;

pub const SERVICE: &str = "order";
pub const DATABASE: &str = "shop_order";
const ROOT: &str = "order";
const HTTP: &str = "order.http";
const REGISTRY: &str = "order.registry";
const PAYMENTS: &str = "order.payments";
const CUSTOMERS: &str = "order.customers";
const OVERDUE: &str = "order.overdue";
const BRIDGE: &str = "order.bridge";
const OUTBOX: &str = "order.outbox";

/// How long the service waits for the cart, user and product services.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Database(#[from] postgres::DatabaseError),
    #[error("the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("starting the supervision tree: {0}")]
    Spawn(#[from] ractor::SpawnErr),
}

/// Creates and migrates `shop_order`.
pub async fn migrate(settings: &Settings) -> Result<PgPool, StartError> {
    Ok(postgres::connect(
        &settings.postgres,
        DATABASE,
        &[&store::MIGRATOR, &shop_bridge::migrator()],
    )
    .await?)
}

/// Starts the order service's supervision tree.
pub async fn start(settings: &Settings, shutdown: Shutdown) -> Result<Service, StartError> {
    let pool = migrate(settings).await?;
    let orders = orders::Orders::new(
        orders::OrderKind::KIND,
        REGISTRY,
        settings.http.actor_timeout,
    );
    let http = reqwest::Client::builder()
        .timeout(UPSTREAM_TIMEOUT)
        .build()?;
    let base = |url: &shop_config::Url| url.as_str().trim_end_matches('/').to_owned();
    let checkout = checkout::Checkout {
        pool: pool.clone(),
        tokens: ServiceTokens::new(http.clone(), &settings.auth),
        http,
        cart_url: base(&settings.cart.url),
        user_url: base(&settings.auth.user_service_url),
        product_url: base(&settings.product.url),
        payment_grace: settings.order.payment_grace,
        reservation_margin: settings.order.reservation_margin,
        orders: orders.clone(),
        rules: Arc::new(checkout::Rules {
            shipping: settings.order.shipping.clone(),
            tax: settings.order.tax.clone(),
            prices_include_tax: settings.order.prices_include_tax,
        }),
        require_verified_email: settings.order.require_verified_email,
    };

    let web = ServiceWeb {
        service: SERVICE,
        title: "Shop order service",
        root_actor: ROOT.to_owned(),
        verifier: Arc::new(TokenVerifier::for_service(&settings.auth)),
        readiness: postgres::readiness(pool.clone()),
        body_limit: settings.http.body_limit,
        instance: settings.instance.clone(),
        trace_store: settings.tracing.query_url.clone(),
    };
    let (api_pool, api_orders) = (pool.clone(), orders.clone());
    let routes: shop_web::RouteFactory = Arc::new(move || {
        web.endpoint(
            http::OrdersApi {
                pool: api_pool.clone(),
                orders: api_orders.clone(),
                checkout: checkout.clone(),
            },
            "/orders",
        )
    });
    let addr = SocketAddr::new(settings.http.bind_host, settings.order.port);
    let idle_timeout = settings.order.idle_timeout;
    let sweep =
        (settings.order.payment_grace / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));

    let to_orders = Subscriber::deliveries(PAYMENTS);
    let subscriptions = Subscriptions::new()
        .on::<PaymentSucceeded>(to_orders.clone())
        .on::<PaymentFailed>(to_orders.clone())
        .on::<PaymentRefunded>(to_orders)
        .on::<UserDeleted>(Subscriber::deliveries(CUSTOMERS));

    let payment_orders = orders.clone();
    let (customer_pool, customer_orders) = (pool.clone(), orders.clone());
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
            orders::OrderKind { pool: pool.clone() },
            orders.clone(),
            entities::Idleness::passivate_after(idle_timeout),
        ))
        .child(Child::actor(
            PAYMENTS,
            "router",
            Restart::Permanent,
            move || {
                let args = RouterArgs {
                    entities: payment_orders.clone(),
                    wrap: actor::OrderMsg::Event,
                };
                (EntityRouter::default(), args)
            },
        ))
        .child(Child::actor(
            CUSTOMERS,
            "router",
            Restart::Permanent,
            move || {
                let args = customers::CustomerEventsArgs {
                    pool: customer_pool.clone(),
                    orders: customer_orders.clone(),
                };
                (customers::CustomerEvents, args)
            },
        ))
        .child(Child::actor(
            OVERDUE,
            "timer",
            Restart::Permanent,
            move || {
                let args = orders::overdue_sweeper(sweeper_pool.clone(), orders.clone(), sweep);
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
