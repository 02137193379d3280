//! `/notifications`: the caller's messages, everyone's for an admin (filtered, paged), one
//! message, retrying a failed one (admin), and the caller's opt-outs.

use chrono::{DateTime, Utc};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Enum, Object, OpenApi};
use shop_web::{ApiError, BearerAuth};
use sqlx::PgPool;
use uuid::Uuid;

use crate::deliveries::{MessageMsg, Messages};
use crate::error::NotificationError;
use crate::store::{self, Delivery, Filter, Preferences};

pub struct NotificationsApi {
    pub pool: PgPool,
    pub messages: Messages,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
enum Status {
    Queued,
    Sent,
    Retrying,
    Failed,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Queued => "queued",
            Status::Sent => "sent",
            Status::Retrying => "retrying",
            Status::Failed => "failed",
        }
    }
}

#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
struct NotificationBody {
    id: Uuid,
    /// The event that caused it.
    event_id: Uuid,
    event_type: String,
    /// `email` or `sms`.
    channel: String,
    user_id: Option<Uuid>,
    /// An email address or a phone number.
    recipient: String,
    template: String,
    subject: Option<String>,
    /// `queued`, `sent`, `retrying` or `failed`.
    status: String,
    attempts: i32,
    last_error: Option<String>,
    provider_message_id: Option<String>,
    next_attempt_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    sent_at: Option<DateTime<Utc>>,
}

impl From<Delivery> for NotificationBody {
    fn from(row: Delivery) -> Self {
        Self {
            id: row.id,
            event_id: row.event_id,
            event_type: row.event_type,
            channel: row.channel,
            user_id: row.user_id,
            recipient: row.recipient,
            template: row.template,
            subject: row.subject,
            status: row.status,
            attempts: row.attempts,
            last_error: row.last_error,
            provider_message_id: row.provider_message_id,
            next_attempt_at: row.next_attempt_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
            sent_at: row.sent_at,
        }
    }
}

#[derive(Debug, Object)]
struct NotificationPage {
    items: Vec<NotificationBody>,
    page: u32,
    per_page: u32,
    total: i64,
}

#[derive(Debug, Object)]
#[oai(deny_unknown_fields)]
struct PreferencesBody {
    /// No email at all.
    email_opt_out: bool,
    /// No SMS at all.
    sms_opt_out: bool,
}

/// Where the caller's notifications go, as this service learned it from the account.
#[derive(Debug, Object)]
#[oai(skip_serializing_if_is_none)]
struct ContactBody {
    email: String,
    name: String,
    /// SMS go here; absent: no SMS.
    phone: Option<String>,
}

#[OpenApi(prefix_path = "/notifications", tag = "NotificationTag::Notifications")]
impl NotificationsApi {
    /// Where the caller's notifications go: the address book follows every change of the
    /// account (`UserUpdated`) a moment after it is made. 404 before the first event arrived.
    #[oai(path = "/contact", method = "get", operation_id = "my_contact")]
    async fn contact(&self, auth: BearerAuth) -> Result<Json<ContactBody>, ApiError> {
        let found = store::contact(&self.pool, auth.0.user_id()?)
            .await
            .map_err(NotificationError::from)?;
        let recipient = found
            .ok_or_else(|| ApiError::not_found("no contact details known yet for this account"))?;
        Ok(Json(ContactBody {
            email: recipient.email,
            name: recipient.name,
            phone: recipient.phone,
        }))
    }

    /// The caller's notifications, newest first.
    #[oai(path = "/me", method = "get", operation_id = "my_notifications")]
    async fn mine(
        &self,
        auth: BearerAuth,
        page: Query<Option<u32>>,
        per_page: Query<Option<u32>>,
    ) -> Result<Json<NotificationPage>, ApiError> {
        let user_id = auth.0.user_id()?;
        self.page(Some(user_id), None, None, page.0, per_page.0)
            .await
    }

    /// Everyone's notifications (admin), newest first; filter by user, status and event type.
    #[oai(path = "/", method = "get", operation_id = "list_notifications")]
    async fn list(
        &self,
        auth: BearerAuth,
        user_id: Query<Option<Uuid>>,
        status: Query<Option<Status>>,
        /// e.g. `OrderPaid`.
        event_type: Query<Option<String>>,
        page: Query<Option<u32>>,
        per_page: Query<Option<u32>>,
    ) -> Result<Json<NotificationPage>, ApiError> {
        auth.0.require_admin()?;
        let status = status.0.map(|status| status.as_str().to_owned());
        self.page(user_id.0, status, event_type.0, page.0, per_page.0)
            .await
    }

    /// The caller's opt-outs.
    #[oai(
        path = "/preferences",
        method = "get",
        operation_id = "get_preferences"
    )]
    async fn preferences(&self, auth: BearerAuth) -> Result<Json<PreferencesBody>, ApiError> {
        let preferences = store::preferences(&self.pool, auth.0.user_id()?)
            .await
            .map_err(NotificationError::from)?;
        Ok(Json(PreferencesBody {
            email_opt_out: preferences.email_opt_out,
            sms_opt_out: preferences.sms_opt_out,
        }))
    }

    /// Set the caller's opt-outs per channel; events from now on respect them.
    #[oai(
        path = "/preferences",
        method = "put",
        operation_id = "set_preferences"
    )]
    async fn set_preferences(
        &self,
        auth: BearerAuth,
        body: Json<PreferencesBody>,
    ) -> Result<Json<PreferencesBody>, ApiError> {
        let preferences = Preferences {
            email_opt_out: body.0.email_opt_out,
            sms_opt_out: body.0.sms_opt_out,
        };
        store::set_preferences(&self.pool, auth.0.user_id()?, preferences)
            .await
            .map_err(NotificationError::from)?;
        Ok(body)
    }

    /// One notification (its user or an admin).
    #[oai(path = "/:id", method = "get", operation_id = "get_notification")]
    async fn get(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> Result<Json<NotificationBody>, ApiError> {
        let delivery = store::delivery(&self.pool, id.0)
            .await
            .map_err(NotificationError::from)?
            .ok_or(NotificationError::NotFound)?;
        if !auth.0.is_admin() && delivery.user_id != Some(auth.0.user_id()?) {
            return Err(NotificationError::NotFound.into());
        }
        Ok(Json(delivery.into()))
    }

    /// Send a failed notification again (admin), with a fresh count of tries.
    #[oai(
        path = "/:id/retry",
        method = "post",
        operation_id = "retry_notification"
    )]
    async fn retry(
        &self,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> Result<Json<NotificationBody>, ApiError> {
        auth.0.require_admin()?;
        let delivery = store::delivery(&self.pool, id.0)
            .await
            .map_err(NotificationError::from)?
            .ok_or(NotificationError::NotFound)?;
        if !store::requeue(&self.pool, id.0)
            .await
            .map_err(NotificationError::from)?
        {
            return Err(NotificationError::NotFailed(delivery.status).into());
        }
        tracing::info!(id = %id.0, by = %auth.0.0.sub, "a failed notification is retried");
        if let Err(error) = self.messages.send(id.0, MessageMsg::Work).await {
            tracing::warn!(id = %id.0, %error, "the retried message waits for the sweeper");
        }
        let delivery = store::delivery(&self.pool, id.0)
            .await
            .map_err(NotificationError::from)?
            .ok_or(NotificationError::NotFound)?;
        Ok(Json(delivery.into()))
    }
}

impl NotificationsApi {
    async fn page(
        &self,
        user_id: Option<Uuid>,
        status: Option<String>,
        event_type: Option<String>,
        page: Option<u32>,
        per_page: Option<u32>,
    ) -> Result<Json<NotificationPage>, ApiError> {
        let paging = shop_web::Paging::new(page, per_page)?;
        let filter = Filter {
            user_id,
            status,
            event_type,
            page: paging.page,
            per_page: paging.per_page,
        };
        let (rows, total) = store::list(&self.pool, &filter)
            .await
            .map_err(NotificationError::from)?;
        Ok(Json(NotificationPage {
            items: rows.into_iter().map(Into::into).collect(),
            page: filter.page,
            per_page: filter.per_page,
            total,
        }))
    }
}

#[derive(poem_openapi::Tags)]
enum NotificationTag {
    /// Notifications and their delivery log
    Notifications,
}
