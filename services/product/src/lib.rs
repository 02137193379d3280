//! The product service: the catalogue (categories, products, prices), stock, and reservations
//! for orders that never oversell.
//!
//! ```text
//! product                      supervisor, one-for-one, at most 5 restarts in 30 s
//! ├── product.http             poem server: /products/*, /categories/*,
//! │                            /internal/reservations/*, /health, /ready, /metrics,
//! │                            /admin/tree                                          permanent
//! ├── product.reservations     expires reservations past their time, on a timer   permanent
//! ├── product.orders           OrderPaid -> sells the reservation; OrderCancelled ->
//! │                            gives its stock back                                permanent
//! ├── product.bridge           Kafka: hears shop.orders, publishes shop.products   permanent
//! └── product.outbox           publishes the outbox (ProductPriceChanged)          permanent
//! ```
//!
//! PostgreSQL database `shop_product`. No actor owns stock: its correctness must hold across
//! replicas, so it lives in PostgreSQL transactions (see `inventory.rs`), and an actor in front
//! of it would only serialise what row locks already order.

mod catalogue;
mod error;
mod expiry;
mod http;
mod inventory;
mod orders;
mod seed;
mod store;

use std::net::SocketAddr;
use std::sync::Arc;

use shop_actors::{Child, Intensity, Restart, Service, SupervisorSpec};
use shop_bridge::{Subscriber, Subscriptions};
use shop_config::Settings;
use shop_schemas::{OrderCancelled, OrderPaid};
use shop_web::server::Shutdown;
use shop_web::{ServiceWeb, TokenVerifier, postgres};
use sqlx::PgPool;

pub use error::ProductError;
pub use seed::Seeded;

pub const SERVICE: &str = "product";
pub const DATABASE: &str = "shop_product";
const ROOT: &str = "product";
const HTTP: &str = "product.http";
const EXPIRY: &str = "product.reservations";
const ORDERS: &str = "product.orders";
const BRIDGE: &str = "product.bridge";
const OUTBOX: &str = "product.outbox";

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Database(#[from] postgres::DatabaseError),
    #[error("starting the supervision tree: {0}")]
    Spawn(#[from] ractor::SpawnErr),
    #[error("seeding the catalogue: {0}")]
    Seed(#[from] ProductError),
}

/// Creates and migrates `shop_product`.
pub async fn migrate(settings: &Settings) -> Result<PgPool, StartError> {
    Ok(postgres::connect(
        &settings.postgres,
        DATABASE,
        &[&store::MIGRATOR, &shop_bridge::migrator()],
    )
    .await?)
}

/// `shop seed`: the demo catalogue.
pub async fn seed(settings: &Settings) -> Result<Seeded, StartError> {
    let pool = migrate(settings).await?;
    Ok(seed::seed(&pool).await?)
}

/// Starts the product service's supervision tree.
pub async fn start(settings: &Settings, shutdown: Shutdown) -> Result<Service, StartError> {
    let pool = migrate(settings).await?;
    let web = ServiceWeb {
        service: SERVICE,
        title: "Shop product service",
        root_actor: ROOT.to_owned(),
        verifier: Arc::new(TokenVerifier::for_service(&settings.auth)),
        readiness: postgres::readiness(pool.clone()),
        body_limit: settings.http.body_limit,
        instance: settings.instance.clone(),
        trace_store: settings.tracing.query_url.clone(),
    };
    let api_pool = pool.clone();
    let default_hold = settings.product.reservation_ttl;
    let routes: shop_web::RouteFactory = Arc::new(move || {
        web.endpoint(
            (
                http::ProductsApi {
                    pool: api_pool.clone(),
                },
                http::CategoriesApi {
                    pool: api_pool.clone(),
                },
                http::ReservationsApi {
                    pool: api_pool.clone(),
                    default_hold,
                },
                http::PricesApi {
                    pool: api_pool.clone(),
                },
            ),
            "/products",
        )
    });
    let addr = SocketAddr::new(settings.http.bind_host, settings.product.port);
    let grace = settings.http.shutdown_grace;
    let sweep = settings.product.reservation_sweep;

    let to_orders = Subscriber::deliveries(ORDERS);
    let subscriptions = Subscriptions::new()
        .on::<OrderPaid>(to_orders.clone())
        .on::<OrderCancelled>(to_orders)
        // Sales and returns of stock that is already held: nobody waits on them.
        .gathering(shop_bridge::GATHER);
    let orders_pool = pool.clone();
    let outbox_pool = pool.clone();

    let tree = SupervisorSpec::new(ROOT)
        .intensity(Intensity::default())
        .child(shop_web::server::child(
            HTTP, SERVICE, addr, routes, shutdown, grace,
        ))
        .child(Child::actor(
            EXPIRY,
            "timer",
            Restart::Permanent,
            move || {
                let args = expiry::ExpiryArgs {
                    pool: pool.clone(),
                    interval: sweep,
                };
                (expiry::ReservationExpiry, args)
            },
        ))
        .child(Child::actor(
            ORDERS,
            "subscriber",
            Restart::Permanent,
            move || (orders::OrderEvents, orders_pool.clone()),
        ))
        .child(shop_bridge::bridge_child(
            BRIDGE,
            SERVICE,
            &settings.kafka,
            subscriptions,
        ))
        .child(shop_bridge::relay_child(
            OUTBOX,
            outbox_pool,
            BRIDGE,
            &settings.kafka,
        ));
    Ok(shop_actors::service::start(tree).await?)
}
