//! Kafka for Shop's services: one bridge actor per service (Avro topic messages in and out as actor
//! messages), the outbox and its relay actor (events published exactly when their transaction
//! commits, at least once), and the inbox (each event's effect applied once).

mod bridge;
mod consume;
mod health;
pub mod inbox;
pub mod kafka;
mod metrics;
pub mod outbox;
mod router;
pub mod testing;

pub use bridge::{
    Ack, Bridge, BridgeArgs, BridgeMsg, Delivery, Subscriber, Subscriptions, publish_via,
};
pub use health::StuckReason;
pub use kafka::{BridgeError, GATHER, Outgoing};
pub use outbox::{OutboxRelay, RelayArgs};
pub use router::{EntityRouter, RouterArgs};

use shop_actors::{Child, Restart};

/// The outbox and inbox tables, for any database that publishes or consumes events. Tracked in
/// a table of their own, so their versions never meet those of the service's own migrations.
pub fn migrator() -> sqlx::migrate::Migrator {
    let mut migrator = sqlx::migrate!("./migrations");
    migrator.dangerous_set_table_name("_shop_bridge_migrations");
    migrator
}
use shop_config::KafkaSettings;

/// The service's bridge, as a child of its root supervisor.
pub fn bridge_child(
    name: &str,
    service: &'static str,
    settings: &KafkaSettings,
    subscriptions: Subscriptions,
) -> Child {
    let settings = settings.clone();
    Child::actor(name, "bridge", Restart::Permanent, move || {
        let args = BridgeArgs {
            service,
            settings: settings.clone(),
            subscriptions: subscriptions.clone(),
        };
        (Bridge, args)
    })
}

/// The service's outbox relay, publishing through the bridge called `bridge`.
pub fn relay_child(
    name: &str,
    pool: sqlx::PgPool,
    bridge: &str,
    settings: &KafkaSettings,
) -> Child {
    let (bridge, poll) = (bridge.to_owned(), settings.outbox_poll);
    Child::actor(name, "relay", Restart::Permanent, move || {
        let args = RelayArgs {
            pool: pool.clone(),
            bridge: bridge.clone(),
            poll,
        };
        (OutboxRelay, args)
    })
}
