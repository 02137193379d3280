//! `GET /users/me/export`: everything the shop holds about a customer, as one JSON document.
//! The user service writes its own part (profile, addresses) and asks each other service for
//! its part over its public API, as the customer, with a token it signs for the purpose (one
//! minute long): no service reads another's database.

use shop_telemetry::Traced;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use shop_web::Role;
use uuid::Uuid;

use crate::accounts::Accounts;
use crate::error::UserError;

/// Where the other services are reached.
pub struct Exporter {
    pub http: reqwest::Client,
    pub cart_url: String,
    pub order_url: String,
    pub payment_url: String,
    pub notification_url: String,
}

/// The largest page every listing gives.
const PER_PAGE: u32 = 100;
/// A customer with more than this many pages of anything is exported up to it.
const MAX_PAGES: u32 = 100;

impl Exporter {
    pub async fn export(&self, accounts: &Accounts, user_id: Uuid) -> Result<Value, UserError> {
        let user = accounts.get(user_id).await?;
        let addresses: Vec<Value> = sqlx::query_scalar(
            "select to_jsonb(a) - 'user_id' from addresses a
             where user_id = $1 order by created_at, id",
        )
        .bind(user_id)
        .fetch_all(&accounts.pool)
        .await?;
        let claims =
            accounts
                .tokens
                .claims(user_id.to_string(), Role::Customer, Duration::from_secs(60));
        let token = accounts.key.sign(&claims)?;
        let as_customer = Caller {
            http: &self.http,
            token: &token,
        };
        let (cart, orders, payments, notifications, preferences) = tokio::try_join!(
            as_customer.one("cart", format!("{}/carts/me", self.cart_url)),
            as_customer.all("order", format!("{}/orders", self.order_url)),
            as_customer.all("payment", format!("{}/payments", self.payment_url)),
            as_customer.all(
                "notification",
                format!("{}/notifications/me", self.notification_url)
            ),
            as_customer.one(
                "notification",
                format!("{}/notifications/preferences", self.notification_url)
            ),
        )?;
        Ok(json!({
            "exported_at": chrono::Utc::now(),
            "profile": {
                "id": user.id,
                "email": user.email,
                "email_verified": user.email_verified_at.is_some(),
                "name": user.name,
                "phone": user.phone,
                "role": user.role,
                "created_at": user.created_at,
                "updated_at": user.updated_at,
            },
            "addresses": addresses,
            "cart": cart,
            "orders": orders,
            // The payment service keeps no card data: a payment method's name and the
            // provider's reference are all there is.
            "payments": payments,
            "notifications": notifications,
            "notification_preferences": preferences,
        }))
    }
}

struct Caller<'a> {
    http: &'a reqwest::Client,
    token: &'a str,
}

impl Caller<'_> {
    async fn get(&self, service: &'static str, url: &str) -> Result<Option<Value>, UserError> {
        let response = self
            .http
            .get(url)
            .bearer_auth(self.token)
            .traced()
            .send()
            .await
            .map_err(|error| {
                tracing::warn!(service, %error, "export: a service did not answer");
                UserError::UpstreamUnavailable(service)
            })?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            status if status.is_success() => response.json().await.map(Some).map_err(|error| {
                UserError::Upstream(format!("{service} answered no JSON: {error}"))
            }),
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY => {
                Err(UserError::UpstreamUnavailable(service))
            }
            status => Err(UserError::Upstream(format!("{service} answered {status}"))),
        }
    }

    /// One document (`null` when there is none).
    async fn one(&self, service: &'static str, url: String) -> Result<Value, UserError> {
        Ok(self.get(service, &url).await?.unwrap_or(Value::Null))
    }

    /// Every item of a paged listing.
    async fn all(&self, service: &'static str, url: String) -> Result<Vec<Value>, UserError> {
        let mut items = Vec::new();
        for page in 1..=MAX_PAGES {
            let url = format!("{url}?page={page}&per_page={PER_PAGE}");
            let Some(mut body) = self.get(service, &url).await? else {
                break;
            };
            let Some(Value::Array(found)) = body.get_mut("items").map(Value::take) else {
                return Err(UserError::Upstream(format!(
                    "{service}: a page without items"
                )));
            };
            let last = found.len() < PER_PAGE as usize;
            items.extend(found);
            if last {
                break;
            }
        }
        Ok(items)
    }
}
