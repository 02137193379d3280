//! The cart service: one actor per user's cart, on a MongoDB-compatible store.
//!
//! ```text
//! cart                   supervisor, one-for-one, at most 5 restarts in 30 s
//! ├── cart.http          poem server: /carts/*, /health, /ready, /metrics, /admin/tree   permanent
//! ├── cart.registry      starts carts on demand, hibernates idle ones, forgets them later permanent
//! │   └── cart:<user> × N   one per user with a recent request; woken from its hibernation
//! │                         record or read from the store; restarted from the store
//! │                         when it fails (at most 3 times in 10 s)                     transient
//! ├── cart.orders        OrderPlaced -> takes the ordered lines out of the cart;
//! │                      UserDeleted -> empties the customer's cart                      permanent
//! ├── cart.prices        ProductPriceChanged -> carts holding the product take its price permanent
//! └── cart.bridge        Kafka: hears shop.orders, shop.products and shop.users          permanent
//! ```
//!
//! Each cart actor is the only writer of its document and answers a change once it is durable;
//! changes that arrive while a write is in flight go out together in the next one (group commit).
//! Documents are written whole and guarded by their version, so two processes holding the same
//! cart never overwrite each other: the loser reloads and re-applies.

mod actor;
mod cart;
mod error;
mod http;
mod internal;
mod metrics;
mod orders;
mod prices;
mod products;
mod registry;
mod store;

use std::net::SocketAddr;
use std::sync::Arc;

use shop_actors::entities;
use shop_actors::{Child, Intensity, Restart, Service, SupervisorSpec};
use shop_bridge::{Subscriber, Subscriptions};
use shop_config::Settings;
use shop_schemas::{OrderPlaced, ProductPriceChanged, UserDeleted};
use shop_web::server::Shutdown;
use shop_web::{ServiceWeb, TokenVerifier};

pub use cart::{MAX_LINES, MAX_QUANTITY};
pub use error::CartError;
pub use store::{CartStore, DATABASE, StoreError};

pub const SERVICE: &str = "cart";
const ROOT: &str = "cart";
const HTTP: &str = "cart.http";
const REGISTRY: &str = "cart.registry";
const ORDERS: &str = "cart.orders";
const PRICES: &str = "cart.prices";
const BRIDGE: &str = "cart.bridge";

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("connecting to the cart store: {0}")]
    Store(#[from] StoreError),
    #[error("starting the supervision tree: {0}")]
    Spawn(#[from] ractor::SpawnErr),
}

/// Starts the cart service's supervision tree.
pub async fn start(settings: &Settings, shutdown: Shutdown) -> Result<Service, StartError> {
    let store = CartStore::connect(settings.cart.mongodb_url.as_str()).await?;
    let carts = registry::Carts::new(REGISTRY, settings.http.actor_timeout);
    let products = products::Products::new(
        settings.product.url.as_str(),
        settings.cart.product_cache_ttl,
    );

    let ready_store = store.clone();
    let web = ServiceWeb {
        service: SERVICE,
        title: "Shop cart service",
        root_actor: ROOT.to_owned(),
        verifier: Arc::new(TokenVerifier::for_service(&settings.auth)),
        readiness: Arc::new(move || {
            let store = ready_store.clone();
            Box::pin(async move {
                store
                    .ping()
                    .await
                    .map_err(|error| format!("the cart store: {error}"))
            })
        }),
        body_limit: settings.http.body_limit,
        instance: settings.instance.clone(),
        trace_store: settings.tracing.query_url.clone(),
    };
    let test_hooks = settings.cart.test_hooks;
    let api_carts = carts.clone();
    let routes: shop_web::RouteFactory = Arc::new(move || {
        web.endpoint(
            (
                http::CartsApi {
                    carts: api_carts.clone(),
                    products: products.clone(),
                    test_hooks,
                },
                internal::InternalApi {
                    carts: api_carts.clone(),
                },
            ),
            "/carts",
        )
    });
    let addr = SocketAddr::new(settings.http.bind_host, settings.cart.port);
    let idle_timeout = settings.cart.idle_timeout;
    let order_carts = carts.clone();
    let (price_carts, price_store) = (carts.clone(), store.clone());
    let subscriptions = Subscriptions::new()
        .on::<OrderPlaced>(Subscriber::deliveries(ORDERS))
        .on::<UserDeleted>(Subscriber::deliveries(ORDERS))
        .on::<ProductPriceChanged>(Subscriber::deliveries(PRICES))
        // Checkout takes the ordered lines out itself; the event only makes sure.
        .gathering(shop_bridge::GATHER);

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
            registry::CartKind {
                store,
                idle_timeout,
                panic_percent: settings.cart.panic_percent,
            },
            carts.entities().clone(),
            entities::Idleness::hibernate_after(settings.cart.hibernate_after, idle_timeout),
        ))
        .child(Child::actor(
            ORDERS,
            "subscriber",
            Restart::Permanent,
            move || (orders::OrderEvents, order_carts.clone()),
        ))
        .child(Child::actor(
            PRICES,
            "subscriber",
            Restart::Permanent,
            move || {
                let args = prices::PriceEventsArgs {
                    carts: price_carts.clone(),
                    store: price_store.clone(),
                };
                (prices::PriceEvents, args)
            },
        ))
        .child(shop_bridge::bridge_child(
            BRIDGE,
            SERVICE,
            &settings.kafka,
            subscriptions,
        ));
    Ok(shop_actors::service::start(tree).await?)
}
