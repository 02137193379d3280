//! The load tester's customers: registered once, kept in a file, signed in again by refresh token
//! on later runs (argon2id makes a registration cost ~10 ms of a core; a refresh does not).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

#[derive(Clone, Serialize, Deserialize)]
pub struct StoredUser {
    pub email: String,
    pub password: String,
    pub refresh_token: String,
}

/// A customer ready to shop: its id and a fresh access token.
#[derive(Clone)]
pub struct Customer {
    pub id: String,
    pub token: String,
}

pub fn pool_file(data_dir: &Path) -> PathBuf {
    data_dir.join("load-users.json")
}

fn progress(total: usize, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg:>22} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_message(what.to_owned());
    bar
}

/// `count` signed-in customers: from the pool file where it has them, registered otherwise.
/// Setup goes straight to the user service (`user_url`), not through the gateway's login limit.
pub async fn customers(
    client: &reqwest::Client,
    user_url: &str,
    file: &Path,
    count: usize,
) -> anyhow::Result<Vec<Customer>> {
    let stored: Vec<StoredUser> = match std::fs::read(file) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let missing = count.saturating_sub(stored.len());
    let bar = progress(count, "signing in customers");
    let mut signed_in: Vec<(StoredUser, Customer)> = futures::stream::iter(
        stored
            .into_iter()
            .take(count)
            .map(Some)
            .chain((0..missing).map(|_| None)),
    )
    .map(|known| {
        let bar = bar.clone();
        async move {
            let result = match known {
                Some(user) => resume(client, user_url, user).await,
                None => register(client, user_url).await,
            };
            bar.inc(1);
            result
        }
    })
    .buffer_unordered(16)
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<anyhow::Result<_>>()?;
    bar.finish_and_clear();

    let mut all: Vec<StoredUser> = match std::fs::read(file) {
        Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    // Keep users beyond `count` from earlier runs, with the refreshed tokens of these.
    all.retain(|user| !signed_in.iter().any(|(known, _)| known.email == user.email));
    all.extend(signed_in.iter().map(|(user, _)| user.clone()));
    if let Some(parent) = file.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(file, serde_json::to_vec(&all)?)
        .with_context(|| format!("saving the customers to {}", file.display()))?;
    signed_in.sort_by(|a, b| a.0.email.cmp(&b.0.email));
    Ok(signed_in
        .into_iter()
        .map(|(_, customer)| customer)
        .collect())
}

async fn register(
    client: &reqwest::Client,
    user_url: &str,
) -> anyhow::Result<(StoredUser, Customer)> {
    let email = format!("load-{}@shop.test", uuid::Uuid::new_v4().simple());
    let password = format!("load-{}", uuid::Uuid::new_v4().simple());
    let response = client
        .post(format!("{user_url}/users/register"))
        .json(&json!({ "email": email, "password": password, "name": "Load tester" }))
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("registering a customer: {}", response.status());
    }
    login(client, user_url, email, password).await
}

async fn login(
    client: &reqwest::Client,
    user_url: &str,
    email: String,
    password: String,
) -> anyhow::Result<(StoredUser, Customer)> {
    let response = client
        .post(format!("{user_url}/users/login"))
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("signing in {email}: {}", response.status());
    }
    let tokens: Value = response.json().await?;
    signed_in(email, password, &tokens)
}

/// Refreshes a stored customer's session; if the token is spent, signs in again.
async fn resume(
    client: &reqwest::Client,
    user_url: &str,
    user: StoredUser,
) -> anyhow::Result<(StoredUser, Customer)> {
    let response = client
        .post(format!("{user_url}/users/refresh"))
        .json(&json!({ "refresh_token": user.refresh_token }))
        .send()
        .await?;
    if response.status().is_success() {
        let tokens: Value = response.json().await?;
        return signed_in(user.email, user.password, &tokens);
    }
    login(client, user_url, user.email, user.password).await
}

fn signed_in(
    email: String,
    password: String,
    tokens: &Value,
) -> anyhow::Result<(StoredUser, Customer)> {
    let access = tokens["access_token"].as_str().context("no access token")?;
    let refresh = tokens["refresh_token"]
        .as_str()
        .context("no refresh token")?;
    let payload = access
        .split('.')
        .nth(1)
        .context("a malformed access token")?;
    let claims: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .context("a malformed access token")?,
    )?;
    let id = claims["sub"].as_str().context("no subject")?.to_owned();
    Ok((
        StoredUser {
            email,
            password,
            refresh_token: refresh.to_owned(),
        },
        Customer {
            id,
            token: access.to_owned(),
        },
    ))
}
