//! What each event sends, to whom: the event handler's decisions, made in one transaction with
//! the event's id in the inbox, so a redelivered event records (and sends) nothing again.

use serde_json::{Value, json};
use shop_schemas::Envelope;
use sqlx::PgPool;
use uuid::Uuid;

use crate::store::{self, Delivery, Learned, NewDelivery, OrderContact, Preferences, Recipient};
use crate::templates::Templates;

/// Every kind of message about orders and the welcome, named as its templates are (email and
/// SMS).
pub const KINDS: [&str; 8] = [
    "welcome",
    "order_placed",
    "order_paid",
    "order_shipped",
    "order_delivered",
    "order_cancelled",
    "payment_failed",
    "payment_refunded",
];

/// The mails about the account itself (`AccountMailRequested`): email only, sent to the address
/// the event names whatever the opt-outs say — it is how a customer proves an address or gets
/// back in.
pub const ACCOUNT_KINDS: [&str; 5] = [
    "verify_email",
    "email_change",
    "email_change_notice",
    "password_reset",
    "password_changed",
];

/// The kind of message an event sends, whom it is about (a user, or an order whose customer
/// the service learned from `OrderPlaced`), and what the templates may use.
fn message(event: &Envelope) -> Option<(&'static str, About, Value)> {
    let short = |id: Uuid| id.simple().to_string()[..8].to_owned();
    Some(match event {
        Envelope::UserRegistered(e) => (
            "welcome",
            About::User(e.user_id),
            json!({
                "token": e.verification_token,
                "expires_at": e.verification_expires_at.map(when),
            }),
        ),
        Envelope::AccountMailRequested(e) => (
            e.kind.as_str(),
            About::Account {
                user_id: e.user_id,
                email: e.email.clone(),
                name: e.name.clone(),
            },
            json!({
                "token": e.token,
                "expires_at": e.expires_at.map(when),
                "new_email": e.new_email,
            }),
        ),
        Envelope::OrderPlaced(e) => {
            let lines: Vec<Value> = e
                .lines
                .iter()
                .map(|line| {
                    json!({
                        "name": line.name, "quantity": line.quantity, "unit_price": line.unit_price,
                        "line_total": line.unit_price * i64::from(line.quantity),
                    })
                })
                .collect();
            let context = json!({
                "order_id": e.order_id, "short_id": short(e.order_id), "lines": lines,
                "total": e.total, "currency": e.currency,
                // v2 of the event: absent (null) for orders placed before shipping and tax.
                "subtotal": e.subtotal, "shipping": e.shipping, "tax": e.tax,
                "prices_include_tax": e.prices_include_tax,
                "shipping_method": e.shipping_method, "address": e.shipping_address,
            });
            ("order_placed", About::User(e.customer_id), context)
        }
        Envelope::OrderPaid(e) => (
            "order_paid",
            About::User(e.customer_id),
            json!({ "order_id": e.order_id, "short_id": short(e.order_id), "amount": e.amount, "currency": e.currency }),
        ),
        Envelope::OrderShipped(e) => (
            "order_shipped",
            About::User(e.customer_id),
            json!({
                "order_id": e.order_id, "short_id": short(e.order_id),
                "tracking_number": e.tracking_number, "carrier": e.carrier,
                "delivery_min_days": e.delivery_min_days, "delivery_max_days": e.delivery_max_days,
            }),
        ),
        Envelope::OrderDelivered(e) => (
            "order_delivered",
            About::User(e.customer_id),
            json!({ "order_id": e.order_id, "short_id": short(e.order_id) }),
        ),
        Envelope::OrderCancelled(e) => (
            "order_cancelled",
            About::User(e.customer_id),
            json!({ "order_id": e.order_id, "short_id": short(e.order_id), "reason": e.reason, "was_paid": e.was_paid }),
        ),
        Envelope::PaymentFailed(e) => (
            "payment_failed",
            About::Order(e.order_id),
            json!({ "order_id": e.order_id, "short_id": short(e.order_id), "amount": e.amount, "currency": e.currency, "reason": e.reason }),
        ),
        Envelope::PaymentRefunded(e) => (
            "payment_refunded",
            About::Order(e.order_id),
            json!({ "order_id": e.order_id, "short_id": short(e.order_id), "amount": e.amount, "currency": e.currency }),
        ),
        // The receipt goes out on OrderPaid; a price is nobody's mail; a change of contact
        // details only teaches the address book.
        Envelope::PaymentSucceeded(_)
        | Envelope::ProductPriceChanged(_)
        | Envelope::UserUpdated(_)
        | Envelope::UserDeleted(_) => return None,
    })
}

/// A time in a mail: UTC, to the minute.
fn when(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .map(|at| at.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

fn at(millis: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(millis).unwrap_or_default()
}

/// The address book takes an account's contact details as of `occurred_at` (milliseconds).
async fn learn_account(
    transaction: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    (user_id, email, name, phone): (Uuid, &String, &String, &Option<String>),
    occurred_at: i64,
) -> Result<(), sqlx::Error> {
    let recipient = Recipient {
        user_id,
        email: email.clone(),
        name: name.clone(),
        phone: phone.clone(),
    };
    store::save_recipient(
        transaction,
        &recipient,
        at(occurred_at),
        Learned::FromAccount,
    )
    .await
}

enum About {
    User(Uuid),
    Order(Uuid),
    /// A mail about the account, to the address the event names.
    Account {
        user_id: Uuid,
        email: String,
        name: String,
    },
}

/// Learns addresses and orders from `event`, records the messages it sends (rendered, or failed
/// with the template's error), and returns those to send now.
pub async fn plan(
    pool: &PgPool,
    templates: &Templates,
    event: &Envelope,
) -> Result<Vec<Delivery>, sqlx::Error> {
    // An event that sends nothing and teaches nothing has no effect to record once.
    let teaches = matches!(
        event,
        Envelope::UserRegistered(_)
            | Envelope::UserUpdated(_)
            | Envelope::UserDeleted(_)
            | Envelope::OrderPlaced(_)
    );
    if !teaches && message(event).is_none() {
        return Ok(Vec::new());
    }
    let mut transaction = pool.begin().await?;
    if !shop_bridge::inbox::first_time(&mut transaction, store::CONSUMER, event.event_id()).await? {
        transaction.commit().await?;
        return Ok(Vec::new());
    }
    match event {
        Envelope::UserRegistered(e) => {
            let account = (e.user_id, &e.email, &e.name, &e.phone);
            learn_account(&mut transaction, account, e.occurred_at).await?;
        }
        Envelope::UserUpdated(e) => {
            let account = (e.user_id, &e.email, &e.name, &e.phone);
            learn_account(&mut transaction, account, e.occurred_at).await?;
        }
        Envelope::UserDeleted(e) => store::erase(&mut transaction, e.user_id).await?,
        Envelope::OrderPlaced(e) => {
            let recipient = Recipient {
                user_id: e.customer_id,
                email: e.customer_email.clone(),
                name: e.customer_name.clone(),
                phone: None,
            };
            let as_of = at(e.occurred_at);
            store::save_recipient(&mut transaction, &recipient, as_of, Learned::FromOrder).await?;
            let contact = OrderContact {
                customer_id: e.customer_id,
                total: e.total,
                currency: e.currency.clone(),
            };
            store::save_order(&mut transaction, e.order_id, &contact).await?;
        }
        _ => {}
    }
    let Some((kind, about, mut context)) = message(event) else {
        transaction.commit().await?;
        return Ok(Vec::new());
    };
    let account_mail = matches!(about, About::Account { .. });
    let (user_id, found) = match about {
        About::Account {
            user_id,
            email,
            name,
        } => {
            let recipient = Recipient {
                user_id,
                email,
                name,
                phone: None,
            };
            (Some(user_id), Some((recipient, Preferences::default())))
        }
        About::User(user_id) => (
            Some(user_id),
            store::recipient(&mut transaction, user_id).await?,
        ),
        About::Order(order_id) => {
            let user_id = store::order_contact(&mut transaction, order_id)
                .await?
                .map(|contact| contact.customer_id);
            let found = match user_id {
                Some(user_id) => store::recipient(&mut transaction, user_id).await?,
                None => None,
            };
            (user_id, found)
        }
    };
    let event_type = event.name();
    let mut to_send = Vec::new();
    if let (None, Some(user_id)) = (&found, user_id)
        && store::erased(&mut transaction, user_id).await?
    {
        // A deleted customer is sent nothing, and nothing about them is logged.
        transaction.commit().await?;
        return Ok(to_send);
    }
    let Some((recipient, preferences)) = found else {
        let failure = match user_id {
            Some(user_id) => format!("no address known for user {user_id}"),
            None => "no order known for this payment".to_owned(),
        };
        tracing::warn!(event = event_type, %failure, "a message with nobody to send it to");
        let delivery = NewDelivery {
            event_id: event.event_id(),
            event_type,
            channel: "email",
            user_id,
            recipient: "",
            template: kind,
            subject: None,
            body_text: None,
            body_html: None,
            failure: Some(&failure),
        };
        store::add_delivery(&mut transaction, &delivery).await?;
        transaction.commit().await?;
        return Ok(to_send);
    };
    if let Some(context) = context.as_object_mut() {
        context.insert("name".to_owned(), json!(recipient.name));
        context.insert("email".to_owned(), json!(recipient.email));
    }
    if !preferences.email_opt_out {
        let rendered = templates.email(kind, &context);
        let failure = rendered.as_ref().err().map(ToString::to_string);
        if let Some(failure) = &failure {
            tracing::error!(event = event_type, %failure, "an email's template failed");
        }
        let email = rendered.ok();
        let delivery = NewDelivery {
            event_id: event.event_id(),
            event_type,
            channel: "email",
            user_id: Some(recipient.user_id),
            recipient: &recipient.email,
            template: kind,
            subject: email.as_ref().map(|email| email.subject.as_str()),
            body_text: email.as_ref().map(|email| email.text.as_str()),
            body_html: email.as_ref().map(|email| email.html.as_str()),
            failure: failure.as_deref(),
        };
        to_send.extend(store::add_delivery(&mut transaction, &delivery).await?);
    }
    if let Some(phone) = recipient
        .phone
        .as_deref()
        .filter(|_| !preferences.sms_opt_out && !account_mail)
    {
        let rendered = templates.sms(kind, &context);
        let failure = rendered.as_ref().err().map(ToString::to_string);
        let delivery = NewDelivery {
            event_id: event.event_id(),
            event_type,
            channel: "sms",
            user_id: Some(recipient.user_id),
            recipient: phone,
            template: kind,
            subject: None,
            body_text: rendered.as_ref().ok().map(String::as_str),
            body_html: None,
            failure: failure.as_deref(),
        };
        to_send.extend(store::add_delivery(&mut transaction, &delivery).await?);
    }
    transaction.commit().await?;
    Ok(to_send)
}
