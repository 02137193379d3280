//! The Rust type of each event: the newest version of its schema in `avro/`. Money is in integer
//! minor units; `occurred_at` is milliseconds since the Unix epoch (Avro `timestamp-millis`).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Event, ORDERS, PAYMENTS, PRODUCTS, USERS};

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
    /// New in v3: the single-use token that proves the email address; the welcome mail carries
    /// it as a link.
    #[serde(default)]
    pub verification_token: Option<String>,
    /// v3: when `verification_token` stops working (milliseconds since the epoch).
    #[serde(default)]
    pub verification_expires_at: Option<i64>,
}

/// A customer's contact details after a change: the whole of them, so a consumer that missed
/// an update is right again with the next one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserUpdated {
    #[serde(with = "uuid_text")]
    pub event_id: Uuid,
    pub occurred_at: i64,
    #[serde(with = "uuid_text")]
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    /// `None`: the customer has no phone number (any SMS stops).
    pub phone: Option<String>,
    pub email_verified: bool,
}

/// An account was deleted: every service erases or anonymises what it holds about the user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserDeleted {
    #[serde(with = "uuid_text")]
    pub event_id: Uuid,
    pub occurred_at: i64,
    #[serde(with = "uuid_text")]
    pub user_id: Uuid,
    pub by_admin: bool,
}

/// What an [`AccountMailRequested`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountMailKind {
    VerifyEmail,
    EmailChange,
    EmailChangeNotice,
    PasswordReset,
    PasswordChanged,
}

impl AccountMailKind {
    /// The name its templates have.
    pub fn as_str(self) -> &'static str {
        match self {
            AccountMailKind::VerifyEmail => "verify_email",
            AccountMailKind::EmailChange => "email_change",
            AccountMailKind::EmailChangeNotice => "email_change_notice",
            AccountMailKind::PasswordReset => "password_reset",
            AccountMailKind::PasswordChanged => "password_changed",
        }
    }
}

/// A mail about the account itself, sent to `email` whatever the address book says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccountMailRequested {
    #[serde(with = "uuid_text")]
    pub event_id: Uuid,
    pub occurred_at: i64,
    #[serde(with = "uuid_text")]
    pub user_id: Uuid,
    pub kind: AccountMailKind,
    pub email: String,
    pub name: String,
    /// The single-use token the mail's link carries; `None` for notices.
    pub token: Option<String>,
    pub expires_at: Option<i64>,
    /// For `email_change_notice`: the address asked for.
    pub new_email: Option<String>,
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
    /// What is charged: subtotal plus shipping, plus tax where prices do not include it.
    pub total: i64,
    pub currency: String,
    pub payment_method: String,
    pub idempotency_key: String,
    /// v2: a copy of where the order ships (absent in v1 messages). Boxed: every envelope
    /// would otherwise carry its size.
    #[serde(default)]
    pub shipping_address: Option<Box<ShippingAddress>>,
    /// v2: the shipping method's code.
    #[serde(default)]
    pub shipping_method: Option<String>,
    /// v2: the goods, shipping and all tax, in minor units.
    #[serde(default)]
    pub subtotal: Option<i64>,
    #[serde(default)]
    pub shipping: Option<i64>,
    #[serde(default)]
    pub tax: Option<i64>,
    #[serde(default)]
    pub prices_include_tax: Option<bool>,
    /// v2: working days from dispatch, as the shipping method promises.
    #[serde(default)]
    pub delivery_min_days: Option<i32>,
    #[serde(default)]
    pub delivery_max_days: Option<i32>,
    /// v3: when the payment window ends (ms since the epoch, UTC): the order cancels itself
    /// then, so a charge not started by then is not started at all.
    #[serde(default)]
    pub pay_by: Option<i64>,
}

/// Where an order ships: a copy taken at checkout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippingAddress {
    pub name: String,
    pub line1: String,
    pub line2: Option<String>,
    pub city: String,
    pub region: Option<String>,
    pub postal_code: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
    pub phone: Option<String>,
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
    /// v2: who carries it, and the delivery estimate in working days.
    #[serde(default)]
    pub carrier: Option<String>,
    #[serde(default)]
    pub delivery_min_days: Option<i32>,
    #[serde(default)]
    pub delivery_max_days: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductPriceChanged {
    #[serde(with = "uuid_text")]
    pub event_id: Uuid,
    pub occurred_at: i64,
    #[serde(with = "uuid_text")]
    pub product_id: Uuid,
    pub old_price: i64,
    pub new_price: i64,
    pub currency: String,
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
    UserUpdated(UserUpdated),
    UserDeleted(UserDeleted),
    AccountMailRequested(AccountMailRequested),
    /// Boxed: the largest event by far, it would otherwise set the size of every envelope (and
    /// of every actor message carrying one).
    OrderPlaced(Box<OrderPlaced>),
    OrderPaid(OrderPaid),
    OrderShipped(OrderShipped),
    OrderDelivered(OrderDelivered),
    OrderCancelled(OrderCancelled),
    PaymentSucceeded(PaymentSucceeded),
    PaymentFailed(PaymentFailed),
    PaymentRefunded(PaymentRefunded),
    ProductPriceChanged(ProductPriceChanged),
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
                    Envelope::$name(event.into())
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
                    $(Envelope::$name(event) => {
                        crate::encode::<$name>(std::borrow::Borrow::borrow(event))
                    })*
                }
            }

            /// Reads an event of the named type from a resolved Avro value.
            pub(crate) fn from_value(
                name: &str,
                value: &apache_avro::types::Value,
            ) -> Option<Result<Self, apache_avro::Error>> {
                match name {
                    $(stringify!($name) => Some(
                        apache_avro::from_value::<$name>(value).map(|event| Envelope::$name(event.into()))
                    ),)*
                    _ => None,
                }
            }
        }
    };
}

events! {
    UserRegistered on USERS keyed by user_id,
    UserUpdated on USERS keyed by user_id,
    UserDeleted on USERS keyed by user_id,
    AccountMailRequested on USERS keyed by user_id,
    OrderPlaced on ORDERS keyed by order_id,
    OrderPaid on ORDERS keyed by order_id,
    OrderShipped on ORDERS keyed by order_id,
    OrderDelivered on ORDERS keyed by order_id,
    OrderCancelled on ORDERS keyed by order_id,
    PaymentSucceeded on PAYMENTS keyed by order_id,
    PaymentFailed on PAYMENTS keyed by order_id,
    PaymentRefunded on PAYMENTS keyed by order_id,
    ProductPriceChanged on PRODUCTS keyed by product_id,
}
