//! Watching what the services publish: a bridge of the test's own, in a consumer group of its
//! own (so it reads every topic from the start), delivering every event to a collecting actor.
//! Both run under a supervisor, as in a service: a bridge whose consumer is stuck after a Kafka
//! outage fails so that a fresh one takes over, and without a supervisor the watcher would go
//! deaf for the rest of the test (a fault scenario's books then missed every later event).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use shop_actors::{Child, Intensity, Restart, SupervisorSpec};
use shop_bridge::{Ack, Delivery, Subscriber, Subscriptions};
use shop_config::Settings;
use shop_schemas::{
    Envelope, OrderCancelled, OrderDelivered, OrderPaid, OrderPlaced, OrderShipped, PaymentFailed,
    PaymentRefunded, PaymentSucceeded, ProductPriceChanged, UserRegistered,
};
use uuid::Uuid;

/// An event as it arrived, with the trace id its message carried.
#[derive(Debug, Clone)]
pub struct Seen {
    pub event: Envelope,
    pub trace_id: Option<String>,
}

type Log = Arc<Mutex<Vec<Seen>>>;

struct Collector;

impl Actor for Collector {
    type Msg = Delivery;
    type State = Log;
    type Arguments = Log;

    async fn pre_start(&self, _: ActorRef<Delivery>, log: Log) -> Result<Log, ActorProcessingErr> {
        Ok(log)
    }

    async fn handle(
        &self,
        _: ActorRef<Delivery>,
        delivery: Delivery,
        log: &mut Log,
    ) -> Result<(), ActorProcessingErr> {
        log.lock().expect("the log").push(Seen {
            event: delivery.event,
            trace_id: delivery.trace_id,
        });
        let _ = delivery.reply.send(Ack::Done);
        Ok(())
    }
}

/// Every event on every Shop topic, from the beginning.
pub struct Events {
    log: Log,
}

impl Events {
    pub async fn watch() -> Self {
        let settings = Settings::from_env().expect("the settings dev/test exports are valid");
        let run = Uuid::new_v4().simple().to_string();
        let collector = format!("test.events.{run}");
        let log: Log = Arc::default();
        let to = |_: ()| Subscriber::deliveries(collector.clone());
        let subscriptions = Subscriptions::new()
            .on::<UserRegistered>(to(()))
            .on::<OrderPlaced>(to(()))
            .on::<OrderPaid>(to(()))
            .on::<OrderShipped>(to(()))
            .on::<OrderDelivered>(to(()))
            .on::<OrderCancelled>(to(()))
            .on::<PaymentSucceeded>(to(()))
            .on::<PaymentFailed>(to(()))
            .on::<PaymentRefunded>(to(()))
            .on::<ProductPriceChanged>(to(()));
        let collected = log.clone();
        let tree = SupervisorSpec::new(format!("test.watcher.{run}"))
            .intensity(Intensity::default())
            .child(Child::actor(
                &collector,
                "collector",
                Restart::Permanent,
                move || (Collector, collected.clone()),
            ))
            .child(shop_bridge::bridge_child(
                &format!("test.bridge.{run}"),
                Box::leak(format!("test-watcher-{run}").into_boxed_str()),
                &settings.kafka,
                subscriptions,
            ));
        tree.spawn().await.expect("the watcher's tree starts");
        Self { log }
    }

    /// The events about `aggregate` seen so far, in order.
    pub fn about(&self, aggregate: Uuid) -> Vec<Seen> {
        self.log
            .lock()
            .expect("the log")
            .iter()
            .filter(|seen| seen.event.aggregate_id() == aggregate)
            .cloned()
            .collect()
    }

    /// Waits (up to 30 s) for an event about `aggregate` named `name`.
    pub async fn wait_for(&self, aggregate: Uuid, name: &str) -> Seen {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(seen) = self
                .about(aggregate)
                .into_iter()
                .find(|seen| seen.event.name() == name)
            {
                return seen;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {name} about {aggregate} within 30 s; seen: {:?}",
                self.about(aggregate)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Publishes `event` to its topic as its producing service would (the tests stand in for a
/// service that is not built yet).
pub async fn publish(event: impl Into<Envelope>) {
    let settings = Settings::from_env().expect("the settings dev/test exports are valid");
    let producer = shop_bridge::kafka::producer(&settings.kafka).expect("a producer");
    let message = shop_bridge::Outgoing::event(&event.into(), None).expect("the event encodes");
    shop_bridge::kafka::publish(&producer, &message)
        .await
        .expect("Kafka takes the event");
}

/// `OrderPlaced` for one unit of `product` at 10.00 EUR, as an order service before v2 of the
/// event announced it (no address, no totals, no payment window).
pub fn order_placed(customer_id: Uuid, product_id: Uuid, payment_method: &str) -> OrderPlaced {
    OrderPlaced {
        event_id: Uuid::new_v4(),
        occurred_at: shop_schemas::now_millis(),
        order_id: Uuid::now_v7(),
        customer_id,
        customer_email: "placed@shop.test".to_owned(),
        customer_name: "Placed".to_owned(),
        lines: vec![shop_schemas::OrderLine {
            product_id,
            name: "Order thing".to_owned(),
            quantity: 1,
            unit_price: 1000,
        }],
        total: 1000,
        currency: "EUR".to_owned(),
        payment_method: payment_method.to_owned(),
        idempotency_key: Uuid::new_v4().to_string(),
        shipping_address: None,
        shipping_method: None,
        subtotal: None,
        shipping: None,
        tax: None,
        prices_include_tax: None,
        delivery_min_days: None,
        delivery_max_days: None,
        pay_by: None,
    }
}

/// `PaymentSucceeded` for an order, as the payment service will publish it.
pub fn payment_succeeded(order_id: Uuid, amount: i64) -> PaymentSucceeded {
    PaymentSucceeded {
        event_id: Uuid::new_v4(),
        occurred_at: shop_schemas::now_millis(),
        payment_id: Uuid::new_v4(),
        order_id,
        amount,
        currency: "EUR".to_owned(),
        provider_reference: format!("pi_test_{}", Uuid::new_v4().simple()),
    }
}
