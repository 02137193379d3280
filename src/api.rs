//! The few Shop API calls the tools (`shop tree`, `shop bench`, `shop load`) make, in one place.

use anyhow::{Context, bail};
use serde_json::{Value, json};
use shop_config::Settings;

/// Sends `request`, refuses an error status, and reads the JSON answer.
async fn json_of(request: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Value> {
    let response = request.send().await.with_context(|| what.to_owned())?;
    let status = response.status();
    if !status.is_success() {
        bail!("{what}: {status}");
    }
    response.json().await.with_context(|| what.to_owned())
}

fn string_field(value: &Value, field: &str, what: &str) -> anyhow::Result<String> {
    value[field]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("{what}: no {field} in the answer"))
}

/// Signs in as the admin of the settings (straight to the user service).
pub async fn admin_token(client: &reqwest::Client, settings: &Settings) -> anyhow::Result<String> {
    let Some(admin) = &settings.user.admin else {
        bail!("no admin token: pass --token, or set SHOP_ADMIN_EMAIL and SHOP_ADMIN_PASSWORD");
    };
    let login = settings
        .auth
        .user_service_url
        .join("users/login")
        .context("the user service URL")?;
    let body = json!({ "email": admin.email, "password": admin.password.expose() });
    let tokens = json_of(client.post(login).json(&body), "signing in as the admin").await?;
    string_field(&tokens, "access_token", "signing in as the admin")
}

/// A service token for the client id and secret of the settings.
pub async fn service_token(
    client: &reqwest::Client,
    gateway: &str,
    settings: &Settings,
) -> anyhow::Result<String> {
    let auth = &settings.auth;
    let body = json!({
        "client_id": auth.service_client_id,
        "client_secret": auth.service_client_secret.expose(),
    });
    let request = client
        .post(format!("{gateway}/users/service-token"))
        .json(&body);
    let token = json_of(request, "getting a service token").await?;
    string_field(&token, "access_token", "getting a service token")
}

/// The id of the category called `name`, made (as the admin) if there is none.
pub async fn category(
    client: &reqwest::Client,
    gateway: &str,
    admin: Option<&str>,
    name: &str,
) -> anyhow::Result<Option<String>> {
    let request = client.get(format!("{gateway}/categories"));
    let categories = json_of(request, "listing categories (is dev/up running?)").await?;
    let found = categories
        .as_array()
        .and_then(|list| list.iter().find(|category| category["name"] == name));
    if let Some(category) = found {
        return string_field(category, "id", "listing categories").map(Some);
    }
    let Some(admin) = admin else {
        return Ok(None);
    };
    let request = client
        .post(format!("{gateway}/categories"))
        .bearer_auth(admin)
        .json(&json!({ "name": name, "description": "made by the shop tools" }));
    let created = json_of(request, "creating a category").await?;
    string_field(&created, "id", "creating a category").map(Some)
}

/// A new product (as the admin) with stock that never runs out; its id.
pub async fn product_with_plenty_of_stock(
    client: &reqwest::Client,
    gateway: &str,
    admin: &str,
    category: &str,
    name: &str,
    price: i64,
) -> anyhow::Result<String> {
    let request = client
        .post(format!("{gateway}/products"))
        .bearer_auth(admin)
        .json(&json!({
            "sku": format!("TOOL-{}", uuid::Uuid::new_v4().simple()),
            "name": name,
            "price": { "amount": price, "currency": "EUR" },
            "category_id": category,
            "stock": 1_000_000_000,
        }));
    let created = json_of(request, "creating a product").await?;
    string_field(&created, "id", "creating a product")
}

/// The ids of a category's products, oldest first (at most 100).
pub async fn products_in(
    client: &reqwest::Client,
    gateway: &str,
    category: &str,
) -> anyhow::Result<Vec<String>> {
    let request = client.get(format!(
        "{gateway}/products?category={category}&per_page=100&sort=oldest"
    ));
    let listed = json_of(request, "listing products").await?;
    Ok(listed["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

/// One figure of a service's `/metrics` (0 when the series has no sample yet).
pub async fn metric(client: &reqwest::Client, service: &str, name: &str) -> anyhow::Result<f64> {
    let metrics = client
        .get(format!("{service}/metrics"))
        .send()
        .await
        .with_context(|| format!("reading {service}/metrics"))?
        .text()
        .await?;
    let prefix = format!("{name} ");
    Ok(metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0))
}
