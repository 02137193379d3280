//! The notification database: the address book (from events), opt-outs, and the delivery log.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgPool, Postgres, Transaction};
use std::time::Duration;
use uuid::Uuid;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The inbox name of the service's event handler.
pub const CONSUMER: &str = "notification.events";

#[derive(Debug, Clone, FromRow)]
pub struct Recipient {
    pub user_id: Uuid,
    pub email: String,
    pub name: String,
    pub phone: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, FromRow)]
pub struct Preferences {
    pub email_opt_out: bool,
    pub sms_opt_out: bool,
}

#[derive(Debug, Clone, FromRow)]
pub struct OrderContact {
    pub customer_id: Uuid,
    pub total: i64,
    pub currency: String,
}

#[derive(Debug, Clone, FromRow)]
pub struct Delivery {
    pub id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub channel: String,
    pub user_id: Option<Uuid>,
    pub recipient: String,
    pub template: String,
    pub subject: Option<String>,
    pub body_text: Option<String>,
    pub body_html: Option<String>,
    pub status: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub provider_message_id: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
}

impl Delivery {
    pub fn is_pending(&self) -> bool {
        matches!(self.status.as_str(), "queued" | "retrying")
    }
}

/// How an event's copy of a customer's contact details is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    /// From the user service (`UserRegistered`, `UserUpdated`): the whole truth as of the
    /// event's time, a removed phone number included.
    FromAccount,
    /// From an order's snapshot (`OrderPlaced`): only for a customer the book does not know.
    FromOrder,
}

pub async fn save_recipient(
    transaction: &mut Transaction<'_, Postgres>,
    recipient: &Recipient,
    as_of: DateTime<Utc>,
    learned: Learned,
) -> Result<(), sqlx::Error> {
    let statement = match learned {
        // An erased customer stays erased; an older event applied late changes nothing.
        Learned::FromAccount => {
            "insert into recipients (user_id, email, name, phone, as_of) values ($1, $2, $3, $4, $5)
             on conflict (user_id) do update set email = excluded.email, name = excluded.name,
                 phone = excluded.phone, as_of = excluded.as_of, updated_at = now()
             where recipients.erased_at is null and recipients.as_of <= excluded.as_of"
        }
        Learned::FromOrder => {
            "insert into recipients (user_id, email, name, phone, as_of) values ($1, $2, $3, $4, $5)
             on conflict (user_id) do nothing"
        }
    };
    sqlx::query(statement)
        .bind(recipient.user_id)
        .bind(&recipient.email)
        .bind(&recipient.name)
        .bind(&recipient.phone)
        .bind(as_of)
        .execute(&mut **transaction)
        .await?;
    Ok(())
}

/// Forgets a deleted customer: the address book's row emptied and marked erased, the opt-outs
/// gone, the delivery log kept with recipient and contents erased; what was still to be sent
/// is failed.
pub async fn erase(
    transaction: &mut Transaction<'_, Postgres>,
    user_id: Uuid,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into recipients (user_id, email, name, phone, as_of, erased_at)
         values ($1, '', '', null, 'infinity', now())
         on conflict (user_id) do update set email = '', name = '', phone = null,
             as_of = 'infinity', erased_at = now(), updated_at = now()",
    )
    .bind(user_id)
    .execute(&mut **transaction)
    .await?;
    sqlx::query("delete from preferences where user_id = $1")
        .bind(user_id)
        .execute(&mut **transaction)
        .await?;
    sqlx::query(
        "update deliveries set
             recipient = 'erased', subject = null, body_text = null, body_html = null,
             last_error = case when status in ('queued', 'retrying')
                 then 'the customer was deleted' else last_error end,
             status = case when status in ('queued', 'retrying') then 'failed' else status end,
             next_attempt_at = null,
             updated_at = now()
         where user_id = $1",
    )
    .bind(user_id)
    .execute(&mut **transaction)
    .await?;
    Ok(())
}

/// Whether the customer was deleted.
pub async fn erased(
    transaction: &mut Transaction<'_, Postgres>,
    user_id: Uuid,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "select exists (select 1 from recipients where user_id = $1 and erased_at is not null)",
    )
    .bind(user_id)
    .fetch_one(&mut **transaction)
    .await
}

/// Where a customer's notifications go, as the address book has it.
pub async fn contact(pool: &PgPool, user_id: Uuid) -> Result<Option<Recipient>, sqlx::Error> {
    sqlx::query_as(
        "select user_id, email, name, phone from recipients
         where user_id = $1 and erased_at is null",
    )
    .bind(user_id)
    .fetch_optional(pool)
    .await
}

pub async fn save_order(
    transaction: &mut Transaction<'_, Postgres>,
    order_id: Uuid,
    contact: &OrderContact,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into order_contacts (order_id, customer_id, total, currency) values ($1, $2, $3, $4)
         on conflict do nothing",
    )
    .bind(order_id)
    .bind(contact.customer_id)
    .bind(contact.total)
    .bind(&contact.currency)
    .execute(&mut **transaction)
    .await?;
    Ok(())
}

pub async fn recipient(
    transaction: &mut Transaction<'_, Postgres>,
    user_id: Uuid,
) -> Result<Option<(Recipient, Preferences)>, sqlx::Error> {
    #[derive(FromRow)]
    struct Found {
        #[sqlx(flatten)]
        recipient: Recipient,
        #[sqlx(flatten)]
        preferences: Preferences,
    }
    // No preferences row: nothing opted out.
    let found: Option<Found> = sqlx::query_as(
        "select r.user_id, r.email, r.name, r.phone,
                coalesce(p.email_opt_out, false) as email_opt_out,
                coalesce(p.sms_opt_out, false) as sms_opt_out
         from recipients r left join preferences p on p.user_id = r.user_id
         where r.user_id = $1 and r.erased_at is null",
    )
    .bind(user_id)
    .fetch_optional(&mut **transaction)
    .await?;
    Ok(found.map(|found| (found.recipient, found.preferences)))
}

pub async fn order_contact(
    transaction: &mut Transaction<'_, Postgres>,
    order_id: Uuid,
) -> Result<Option<OrderContact>, sqlx::Error> {
    sqlx::query_as("select customer_id, total, currency from order_contacts where order_id = $1")
        .bind(order_id)
        .fetch_optional(&mut **transaction)
        .await
}

/// A message to record: `queued` to be sent, or `failed` when it could not even be written.
pub struct NewDelivery<'a> {
    pub event_id: Uuid,
    pub event_type: &'a str,
    pub channel: &'a str,
    pub user_id: Option<Uuid>,
    pub recipient: &'a str,
    pub template: &'a str,
    pub subject: Option<&'a str>,
    pub body_text: Option<&'a str>,
    pub body_html: Option<&'a str>,
    /// `Some(error)`: recorded as failed.
    pub failure: Option<&'a str>,
}

/// How long a replica that claimed a message has to send it before another may.
pub const SEND_LEASE: Duration = Duration::from_secs(60);

fn lease_end() -> DateTime<Utc> {
    Utc::now() + chrono::Duration::from_std(SEND_LEASE).unwrap_or_default()
}

/// Records a delivery once per (event, channel); the delivery when it is new and queued. A queued one is
/// claimed for the recorder (leased for [`SEND_LEASE`]), who sends it at once: the sweepers of
/// other replicas leave it alone unless the recorder dies first.
pub async fn add_delivery(
    transaction: &mut Transaction<'_, Postgres>,
    delivery: &NewDelivery<'_>,
) -> Result<Option<Delivery>, sqlx::Error> {
    let (status, next_attempt_at) = match delivery.failure {
        Some(_) => ("failed", None),
        None => ("queued", Some(lease_end())),
    };
    let recorded: Option<Delivery> = sqlx::query_as(
        "insert into deliveries (id, event_id, event_type, channel, user_id, recipient, template,
             subject, body_text, body_html, status, last_error, next_attempt_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
         on conflict (event_id, channel) do nothing
         returning *",
    )
    .bind(Uuid::now_v7())
    .bind(delivery.event_id)
    .bind(delivery.event_type)
    .bind(delivery.channel)
    .bind(delivery.user_id)
    .bind(delivery.recipient)
    .bind(delivery.template)
    .bind(delivery.subject)
    .bind(delivery.body_text)
    .bind(delivery.body_html)
    .bind(status)
    .bind(delivery.failure)
    .bind(next_attempt_at)
    .fetch_optional(&mut **transaction)
    .await?;
    Ok(recorded.filter(|_| delivery.failure.is_none()))
}

pub async fn delivery(pool: &PgPool, id: Uuid) -> Result<Option<Delivery>, sqlx::Error> {
    sqlx::query_as("select * from deliveries where id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
}

pub async fn mark_sent(pool: &PgPool, id: Uuid, message_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update deliveries set status = 'sent', attempts = attempts + 1, provider_message_id = $2,
             last_error = null, next_attempt_at = null, sent_at = now(), updated_at = now()
         where id = $1",
    )
    .bind(id)
    .bind(message_id)
    .execute(pool)
    .await?;
    Ok(())
}

/// A failed try: `retrying` until `next_attempt_at`, or `failed` for good when that is `None`.
pub async fn mark_failed_try(
    pool: &PgPool,
    id: Uuid,
    error: &str,
    next_attempt_at: Option<DateTime<Utc>>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update deliveries set status = case when $3::timestamptz is null then 'failed' else 'retrying' end,
             attempts = attempts + 1, last_error = $2, next_attempt_at = $3, updated_at = now()
         where id = $1",
    )
    .bind(id)
    .bind(error)
    .bind(next_attempt_at)
    .execute(pool)
    .await?;
    Ok(())
}

/// An admin asks for a failed delivery again: queued, with a fresh count of tries.
pub async fn requeue(pool: &PgPool, id: Uuid) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query(
        "update deliveries set status = 'queued', attempts = 0, next_attempt_at = now(), updated_at = now()
         where id = $1 and status = 'failed'",
    )
    .bind(id)
    .execute(pool)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Claims a due delivery for sending (leased for [`SEND_LEASE`]): false when it is not due,
/// which includes being claimed by another replica, or is no longer waiting.
pub async fn claim(pool: &PgPool, id: Uuid) -> Result<bool, sqlx::Error> {
    let claimed = sqlx::query(
        "update deliveries set next_attempt_at = $2, updated_at = now()
         where id = $1 and status in ('queued', 'retrying')
           and next_attempt_at <= now() + interval '50 milliseconds'",
    )
    .bind(id)
    .bind(lease_end())
    .execute(pool)
    .await?;
    Ok(claimed.rows_affected() == 1)
}

/// Deliveries waiting to be sent whose time has come.
pub async fn due(pool: &PgPool, limit: i64) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "select id from deliveries where status in ('queued', 'retrying') and next_attempt_at <= now()
         order by next_attempt_at limit $1",
    )
    .bind(limit)
    .fetch_all(pool)
    .await
}

pub struct Filter {
    pub user_id: Option<Uuid>,
    pub status: Option<String>,
    pub event_type: Option<String>,
    pub page: u32,
    pub per_page: u32,
}

pub async fn list(pool: &PgPool, filter: &Filter) -> Result<(Vec<Delivery>, i64), sqlx::Error> {
    let rows = sqlx::query_as(
        "select * from deliveries
         where ($1::uuid is null or user_id = $1) and ($2::text is null or status = $2)
           and ($3::text is null or event_type = $3)
         order by created_at desc, id desc limit $4 offset $5",
    )
    .bind(filter.user_id)
    .bind(&filter.status)
    .bind(&filter.event_type)
    .bind(i64::from(filter.per_page))
    .bind(i64::from(filter.page.saturating_sub(1)) * i64::from(filter.per_page))
    .fetch_all(pool)
    .await?;
    let total = sqlx::query_scalar(
        "select count(*) from deliveries
         where ($1::uuid is null or user_id = $1) and ($2::text is null or status = $2)
           and ($3::text is null or event_type = $3)",
    )
    .bind(filter.user_id)
    .bind(&filter.status)
    .bind(&filter.event_type)
    .fetch_one(pool)
    .await?;
    Ok((rows, total))
}

pub async fn preferences(pool: &PgPool, user_id: Uuid) -> Result<Preferences, sqlx::Error> {
    Ok(
        sqlx::query_as("select email_opt_out, sms_opt_out from preferences where user_id = $1")
            .bind(user_id)
            .fetch_optional(pool)
            .await?
            .unwrap_or_default(),
    )
}

pub async fn set_preferences(
    pool: &PgPool,
    user_id: Uuid,
    preferences: Preferences,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into preferences (user_id, email_opt_out, sms_opt_out) values ($1, $2, $3)
         on conflict (user_id) do update set email_opt_out = excluded.email_opt_out,
             sms_opt_out = excluded.sms_opt_out, updated_at = now()",
    )
    .bind(user_id)
    .bind(preferences.email_opt_out)
    .bind(preferences.sms_opt_out)
    .execute(pool)
    .await?;
    Ok(())
}
