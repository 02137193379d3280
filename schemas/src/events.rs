//! The Rust type of each event: the newest version of its schema in `avro/`. Money is in integer
//! minor units; `occurred_at` is milliseconds since the Unix epoch (Avro `timestamp-millis`).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Event, ORDERS, PAYMENTS, USERS};

/// Uuids as Avro's `uuid` logical type wants them: text (serde's default for a non-human-readable
/// format such as Avro is 16 raw bytes).
mod uuid_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use uuid::Uuid;

    pub fn serialize<S: Serializer>(uuid: &Uuid, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(uuid)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Uuid, D::Error> {
        let text = String::deserialize(deserializer)?;
        Uuid::parse_str(&text).map_err(serde::de::Error::custom)
    }
}

/// Now, as an `occurred_at`.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRegistered {
    #[serde(with = "uuid_text")]
    pub event_id: Uuid,
    pub occurred_at: i64,
    #[serde(with = "uuid_text")]
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    /// New in v2: E.164, for SMS. (`default`: a v1 reader has no such field.)
    #[serde(default)]
    pub phone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderLine {
    #[serde(with = "uuid_text")]
    pub product_id: Uuid,
    pub name: String,
    pub quantity: i32,
    pub unit_price: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderPlaced {
    #[serde(with = "uuid_text")]
    pub event_id: Uuid,
    pub occurred_at: i64,
    #[serde(with = "uuid_text")]
    pub order_id: Uuid,
    #[serde(with = "uuid_text")]
    pub customer_id: Uuid,
    pub customer_email: String,
    pub customer_name: String,
    pub lines: Vec<OrderLine>,
    pub total: i64,
    pub currency: String,
    pub payment_method: String,
    pub idempotency_key: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderPaid {
    #[serde(with = "uuid_text")]
    pub event_id: Uuid,
    pub occurred_at: i64,
    #[serde(with = "uuid_text")]
    pub order_id: Uuid,
    #[serde(with = "uuid_text")]
    pub customer_id: Uuid,
    #[serde(with = "uuid_text")]
    pub payment_id: Uuid,
    pub amount: i64,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderShipped {
    #[serde(with = "uuid_text")]
    pub event_id: Uuid,
    pub occurred_at: i64,
    #[serde(with = "uuid_text")]
    pub order_id: Uuid,
    #[serde(with = "uuid_text")]
    pub customer_id: Uuid,
    pub tracking_number: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderDelivered {
    #[serde(with = "uuid_text")]
    pub event_id: Uuid,
    pub occurred_at: i64,
    #[serde(with = "uuid_text")]
    pub order_id: Uuid,
    #[serde(with = "uuid_text")]
    pub customer_id: Uuid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderCancelled {
    #[serde(with = "uuid_text")]
    pub event_id: Uuid,
    pub occurred_at: i64,
    #[serde(with = "uuid_text")]
    pub order_id: Uuid,
    #[serde(with = "uuid_text")]
    pub customer_id: Uuid,
    pub reason: String,
    pub was_paid: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentSucceeded {
    #[serde(with = "uuid_text")]
    pub event_id: Uuid,
    pub occurred_at: i64,
    #[serde(with = "uuid_text")]
    pub payment_id: Uuid,
    #[serde(with = "uuid_text")]
    pub order_id: Uuid,
    pub amount: i64,
    pub currency: String,
    pub provider_reference: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentFailed {
    #[serde(with = "uuid_text")]
    pub event_id: Uuid,
    pub occurred_at: i64,
    #[serde(with = "uuid_text")]
    pub payment_id: Uuid,
    #[serde(with = "uuid_text")]
    pub order_id: Uuid,
    pub amount: i64,
    pub currency: String,
    pub reason: String,
    pub code: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentRefunded {
    #[serde(with = "uuid_text")]
    pub event_id: Uuid,
    pub occurred_at: i64,
    #[serde(with = "uuid_text")]
    pub payment_id: Uuid,
    #[serde(with = "uuid_text")]
    pub order_id: Uuid,
    pub amount: i64,
    pub currency: String,
}

/// Any event, as the bridge hands it to subscribers.
#[derive(Debug, Clone, PartialEq)]
pub enum Envelope {
    UserRegistered(UserRegistered),
    OrderPlaced(OrderPlaced),
    OrderPaid(OrderPaid),
    OrderShipped(OrderShipped),
    OrderDelivered(OrderDelivered),
    OrderCancelled(OrderCancelled),
    PaymentSucceeded(PaymentSucceeded),
    PaymentFailed(PaymentFailed),
    PaymentRefunded(PaymentRefunded),
}

macro_rules! events {
    ($($name:ident on $topic:ident keyed by $key:ident),* $(,)?) => {
        $(
            impl Event for $name {
                const NAME: &'static str = stringify!($name);
                const TOPIC: &'static str = $topic;
                fn event_id(&self) -> Uuid {
                    self.event_id
                }
                fn aggregate_id(&self) -> Uuid {
                    self.$key
                }
            }

            impl From<$name> for Envelope {
                fn from(event: $name) -> Self {
                    Envelope::$name(event)
                }
            }
        )*

        impl Envelope {
            /// The event's schema name.
            pub fn name(&self) -> &'static str {
                match self {
                    $(Envelope::$name(_) => stringify!($name),)*
                }
            }

            pub fn event_id(&self) -> Uuid {
                match self {
                    $(Envelope::$name(event) => event.event_id,)*
                }
            }

            pub fn aggregate_id(&self) -> Uuid {
                match self {
                    $(Envelope::$name(event) => event.$key,)*
                }
            }

            /// The topic the event is published on.
            pub fn topic(&self) -> &'static str {
                match self {
                    $(Envelope::$name(_) => <$name as Event>::TOPIC,)*
                }
            }

            /// The event as a single-object message, with its schema's fingerprint
            /// (see [`crate::encode`]).
            pub fn encode(&self) -> Result<(Vec<u8>, [u8; 8]), crate::EncodeError> {
                match self {
                    $(Envelope::$name(event) => crate::encode(event),)*
                }
            }

            /// Reads an event of the named type from a resolved Avro value.
            pub(crate) fn from_value(
                name: &str,
                value: &apache_avro::types::Value,
            ) -> Option<Result<Self, apache_avro::Error>> {
                match name {
                    $(stringify!($name) => Some(
                        apache_avro::from_value::<$name>(value).map(Envelope::$name)
                    ),)*
                    _ => None,
                }
            }
        }
    };
}

events! {
    UserRegistered on USERS keyed by user_id,
    OrderPlaced on ORDERS keyed by order_id,
    OrderPaid on ORDERS keyed by order_id,
    OrderShipped on ORDERS keyed by order_id,
    OrderDelivered on ORDERS keyed by order_id,
    OrderCancelled on ORDERS keyed by order_id,
    PaymentSucceeded on PAYMENTS keyed by order_id,
    PaymentFailed on PAYMENTS keyed by order_id,
    PaymentRefunded on PAYMENTS keyed by order_id,
}
