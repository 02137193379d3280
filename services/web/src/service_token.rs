//! A service's own token for calling another service's internal API: asked of the user service
//! with the process's client id and secret (`SHOP_SERVICE_CLIENT_ID`/`_SECRET`), reused until
//! shortly before it expires.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use shop_config::AuthSettings;
use tokio::sync::Mutex;

/// Renew this long before the token expires, so a call never carries one that lapses on the way.
const RENEW_BEFORE: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ServiceTokenError {
    #[error("the user service did not answer: {0}")]
    Unreachable(#[from] reqwest::Error),
    #[error("the user service refused a service token ({0})")]
    Refused(reqwest::StatusCode),
}

#[derive(Clone)]
pub struct ServiceTokens {
    client: reqwest::Client,
    url: String,
    client_id: String,
    client_secret: shop_config::Secret,
    current: Arc<Mutex<Option<(String, Instant)>>>,
}

#[derive(Deserialize)]
struct Issued {
    access_token: String,
    expires_in: u64,
}

impl ServiceTokens {
    pub fn new(client: reqwest::Client, auth: &AuthSettings) -> Self {
        let base = auth.user_service_url.as_str().trim_end_matches('/');
        Self {
            client,
            url: format!("{base}/users/service-token"),
            client_id: auth.service_client_id.clone(),
            client_secret: auth.service_client_secret.clone(),
            current: Arc::default(),
        }
    }

    /// A token valid for at least [`RENEW_BEFORE`]; asks for a new one when needed (one request
    /// at a time: callers that arrive meanwhile wait for it and share it).
    pub async fn get(&self) -> Result<String, ServiceTokenError> {
        let mut current = self.current.lock().await;
        if let Some((token, renew_at)) = current.as_ref()
            && Instant::now() < *renew_at
        {
            return Ok(token.clone());
        }
        let body = serde_json::json!({
            "client_id": self.client_id,
            "client_secret": self.client_secret.expose(),
        });
        let response = self.client.post(&self.url).json(&body).send().await?;
        if !response.status().is_success() {
            return Err(ServiceTokenError::Refused(response.status()));
        }
        let issued: Issued = response.json().await?;
        let lifetime = Duration::from_secs(issued.expires_in);
        let renew_at = Instant::now() + lifetime.saturating_sub(RENEW_BEFORE);
        *current = Some((issued.access_token.clone(), renew_at));
        Ok(issued.access_token)
    }

    /// Forgets the token (the callee refused it: perhaps the keys rotated).
    pub async fn forget(&self) {
        *self.current.lock().await = None;
    }
}
