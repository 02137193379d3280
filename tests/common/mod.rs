//! Helpers for the end-to-end tests: they talk to the system dev/test started, through nginx,
//! like a client would.
#![allow(dead_code)]

pub mod events;
pub mod groups;
pub mod orders;

use std::net::{IpAddr, Ipv4Addr};

use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};

/// Every service, in the order dev/ starts them.
pub const SERVICES: [&str; 6] = [
    "user",
    "product",
    "cart",
    "order",
    "payment",
    "notification",
];

pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: the end-to-end tests run against the system dev/test starts")
    })
}

/// The gateway, e.g. http://127.0.0.1:18080.
pub fn gateway() -> String {
    env("SHOP_GATEWAY_URL").trim_end_matches('/').to_owned()
}

/// The user service itself, bypassing nginx (for operator endpoints).
pub fn user_service() -> String {
    env("SHOP_USER_URL").trim_end_matches('/').to_owned()
}

/// A client of its own loopback address, so nginx's per-client rate limits see each test as a
/// different client (all of 127.0.0.0/8 is loopback on Linux).
pub fn client() -> Client {
    let bytes: [u8; 3] = rand::random();
    let address = IpAddr::V4(Ipv4Addr::new(
        127,
        16 + bytes[0] % 200,
        bytes[1],
        bytes[2].max(1),
    ));
    Client::builder()
        .local_address(address)
        .build()
        .expect("a reqwest client builds")
}

pub fn url(path: &str) -> String {
    format!("{}{path}", gateway())
}

/// GETs `url`, with a bearer token if given.
pub async fn get(client: &Client, url: impl reqwest::IntoUrl, token: Option<&str>) -> Response {
    let mut request = client.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("the system answers")
}

/// GETs `url`, with a bearer token if given, and reads the JSON body.
pub async fn get_json(client: &Client, url: impl reqwest::IntoUrl, token: Option<&str>) -> Value {
    get(client, url, token)
        .await
        .json()
        .await
        .expect("a JSON body")
}

/// PUTs `body` to `url` with a bearer token.
pub async fn put_json(
    client: &Client,
    url: impl reqwest::IntoUrl,
    token: &str,
    body: &Value,
) -> Response {
    client
        .put(url)
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("the system answers")
}

/// POSTs a JSON body of about `bytes` bytes to `url`.
pub async fn post_oversized(client: &Client, url: impl reqwest::IntoUrl, bytes: usize) -> Response {
    client
        .post(url)
        .header("content-type", "application/json")
        .body(format!("{{\"name\": \"{}\"}}", "x".repeat(bytes)))
        .send()
        .await
        .expect("the system answers")
}

pub fn unique_email() -> String {
    format!("e2e-{}@shop.test", uuid::Uuid::new_v4().simple())
}

pub const PASSWORD: &str = "correct-horse-battery";

pub struct Account {
    pub id: String,
    pub email: String,
    pub password: String,
    pub access_token: String,
    pub refresh_token: String,
}

pub async fn register(client: &Client, email: &str, password: &str) -> Response {
    client
        .post(url("/users/register"))
        .json(&json!({ "email": email, "password": password, "name": "E2E Tester" }))
        .send()
        .await
        .expect("the gateway answers")
}

pub async fn login(client: &Client, email: &str, password: &str) -> Response {
    client
        .post(url("/users/login"))
        .json(&json!({ "email": email, "password": password }))
        .send()
        .await
        .expect("the gateway answers")
}

/// A new customer, signed in.
pub async fn customer(client: &Client) -> Account {
    let email = unique_email();
    let registered = register(client, &email, PASSWORD).await;
    assert_eq!(registered.status(), StatusCode::CREATED);
    let user: Value = registered.json().await.unwrap();
    signed_in(client, user["id"].as_str().unwrap(), &email, PASSWORD).await
}

/// The admin dev/test configured, signed in.
pub async fn admin(client: &Client) -> Account {
    let email = env("SHOP_ADMIN_EMAIL");
    let password = env("SHOP_ADMIN_PASSWORD");
    let tokens = signed_in(client, "", &email, &password).await;
    let me = get_json(client, url("/users/me"), Some(&tokens.access_token)).await;
    Account {
        id: me["id"].as_str().unwrap().to_owned(),
        ..tokens
    }
}

async fn signed_in(client: &Client, id: &str, email: &str, password: &str) -> Account {
    let response = login(client, email, password).await;
    assert_eq!(response.status(), StatusCode::OK, "login of {email}");
    let tokens: Value = response.json().await.unwrap();
    Account {
        id: id.to_owned(),
        email: email.to_owned(),
        password: password.to_owned(),
        access_token: tokens["access_token"].as_str().unwrap().to_owned(),
        refresh_token: tokens["refresh_token"].as_str().unwrap().to_owned(),
    }
}

/// Asserts `response` is a problem+json with `status`, and returns its body.
pub async fn problem(response: Response, status: u16) -> Value {
    assert_eq!(
        response.status().as_u16(),
        status,
        "status of {}",
        response.url()
    );
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let header_id = response
        .headers()
        .get("x-request-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let body: Value = response.json().await.expect("a JSON problem body");
    assert!(
        content_type.starts_with("application/problem+json"),
        "content type {content_type} for {body}"
    );
    assert_eq!(body["status"], status, "{body}");
    assert!(
        body["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("https://")),
        "{body}"
    );
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    assert_eq!(body["request_id"].as_str(), header_id.as_deref(), "{body}");
    body
}

/// The product service itself, bypassing nginx (for its internal reservation API).
/// The sum of the samples of the metric `name` (every label set) on `service_url`'s `/metrics`.
pub async fn metric_sum(service_url: &str, name: &str) -> f64 {
    metric_sum_where(service_url, |line| {
        line.split([' ', '{']).next() == Some(name)
    })
    .await
}

/// The sum of the samples on `service_url`'s `/metrics` whose line `matches`.
pub async fn metric_sum_where(service_url: &str, matches: impl Fn(&str) -> bool) -> f64 {
    let metrics = client()
        .get(format!("{service_url}/metrics"))
        .send()
        .await
        .expect("the service answers")
        .text()
        .await
        .expect("metrics are text");
    metrics
        .lines()
        .filter(|line| matches(line))
        .filter_map(|line| line.split_whitespace().last()?.parse::<f64>().ok())
        .sum()
}

pub fn product_service() -> String {
    env("SHOP_PRODUCT_URL").trim_end_matches('/').to_owned()
}

/// A short-lived token with role `service`, as the order service would get one.
pub async fn service_token(client: &Client) -> String {
    let response = client
        .post(url("/users/service-token"))
        .json(&json!({ "client_id": "shop-services", "client_secret": "dev-service-secret" }))
        .send()
        .await
        .expect("the gateway answers");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("a JSON body");
    body["access_token"].as_str().expect("a token").to_owned()
}

/// A random lower-case word, for names and searches no other test uses.
pub fn unique_word() -> String {
    (0..10)
        .map(|_| char::from(b'a' + rand::random::<u8>() % 26))
        .collect()
}

/// POSTs `body` to `url` with a bearer token, and asserts a 201 with a JSON body.
pub async fn create(client: &Client, url: &str, token: &str, body: Value) -> Value {
    let response = client
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("the system answers");
    let status = response.status();
    let body: Value = response.json().await.expect("a JSON body");
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body
}

/// A new category (as the admin).
pub async fn category(client: &Client, admin: &str, parent: Option<&str>) -> Value {
    let name = format!("Category {}", unique_word());
    create(
        client,
        &url("/categories"),
        admin,
        json!({ "name": name, "parent_id": parent }),
    )
    .await
}

/// A new product in `category` with `stock` units on hand (as the admin).
pub async fn product(
    client: &Client,
    admin: &str,
    category: &str,
    name: &str,
    price: i64,
    stock: i32,
) -> Value {
    create(
        client,
        &url("/products"),
        admin,
        json!({
            "sku": format!("T-{}", unique_word()),
            "name": name,
            "description": "made for a test",
            "price": { "amount": price, "currency": "EUR" },
            "category_id": category,
            "stock": stock,
        }),
    )
    .await
}

/// POSTs `body` to `url` with a bearer token; the status only.
pub async fn create_status(client: &Client, url: &str, token: &str, body: Value) -> u16 {
    client
        .post(url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("the system answers")
        .status()
        .as_u16()
}

/// Products (as the admin) named `name N`, priced `base_price + N` minor units, with the given
/// stock, in a category of their own; their ids.
pub async fn products_on_a_shelf(name: &str, base_price: i64, stock: &[i32]) -> Vec<String> {
    let client = client();
    let admin = admin(&client).await.access_token;
    let shelf = category(&client, &admin, None).await;
    let mut ids = Vec::new();
    for (index, units) in stock.iter().enumerate() {
        let created = product(
            &client,
            &admin,
            shelf["id"].as_str().unwrap(),
            &format!("{name} {index}"),
            base_price + index as i64,
            *units,
        )
        .await;
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    ids
}

/// A signed-in caller with its own connection pool: a new customer, or the admin.
pub struct Shopper {
    pub client: Client,
    pub token: String,
    pub id: String,
    pub email: String,
}

impl Shopper {
    pub async fn customer() -> Self {
        let client = client();
        let account = customer(&client).await;
        Self {
            client,
            token: account.access_token,
            id: account.id,
            email: account.email,
        }
    }

    pub async fn admin() -> Self {
        let client = client();
        let account = admin(&client).await;
        Self {
            client,
            token: account.access_token,
            id: account.id,
            email: account.email,
        }
    }

    pub fn uuid(&self) -> uuid::Uuid {
        self.id.parse().expect("user ids are UUIDs")
    }

    /// Adds `quantity` of `product` to the caller's cart.
    pub async fn add(&self, product: &str, quantity: i64) -> Response {
        self.client
            .post(url("/carts/me/items"))
            .bearer_auth(&self.token)
            .json(&json!({ "product_id": product, "quantity": quantity }))
            .send()
            .await
            .expect("the gateway answers")
    }

    pub async fn cart(&self) -> Value {
        get_json(&self.client, url("/carts/me"), Some(&self.token)).await
    }

    pub async fn get(&self, path: &str) -> Response {
        get(&self.client, url(path), Some(&self.token)).await
    }

    /// A bodiless POST to `path`.
    pub async fn post(&self, path: &str) -> Response {
        self.client
            .post(url(path))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("the gateway answers")
    }
}

/// Runs a function of dev/lib.sh against the dev/test instance (stop_pid NAME, start_services).
pub fn dev(function: &str) {
    let status = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source dev/lib.sh && SHOP_BIN=$ROOT/target/debug/shop && {function}"
        ))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("SHOP_DEV_INSTANCE", "test")
        .env("SHOP_DEV_PORT_OFFSET", "10000")
        .status()
        .expect("bash runs");
    assert!(status.success(), "dev/lib.sh {function} failed");
}

/// The payment service's database, to count what the simulated provider charged.
pub async fn payment_database() -> sqlx::PgPool {
    database("shop_payment").await
}

/// A service's database (`shop_user`, …), to look at what no API shows.
pub async fn database(name: &str) -> sqlx::PgPool {
    let settings =
        shop_config::Settings::from_env().expect("the settings dev/test exports are valid");
    shop_web::postgres::connect(&settings.postgres, name, &[])
        .await
        .unwrap_or_else(|error| panic!("the database {name}: {error}"))
}

/// Charges the simulated provider made for an order.
pub async fn charges_of(order_id: uuid::Uuid) -> i64 {
    sqlx::query_scalar("select count(*) from simulated_charges where idempotency_key = $1")
        .bind(format!("shop-order-{order_id}"))
        .fetch_one(&payment_database().await)
        .await
        .expect("counting charges")
}

/// The subjects of the mails Mailpit holds for `address`, newest first.
pub async fn mails_to(address: &str) -> Vec<String> {
    let mut search = reqwest::Url::parse(&format!("{}/api/v1/search", env("SHOP_MAILPIT_URL")))
        .expect("SHOP_MAILPIT_URL is a URL");
    search
        .query_pairs_mut()
        .append_pair("query", &format!("to:\"{address}\""));
    let found: Value = reqwest::Client::new()
        .get(search)
        .send()
        .await
        .expect("Mailpit answers")
        .json()
        .await
        .expect("Mailpit's search is JSON");
    found["messages"]
        .as_array()
        .map(|messages| {
            messages
                .iter()
                .filter_map(|message| message["Subject"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// The text of the mail to `address` whose subject contains `subject`, once it arrived (up to
/// 30 s).
pub async fn mail_text(address: &str, subject: &str) -> String {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let mailpit = env("SHOP_MAILPIT_URL");
    loop {
        let mut search = reqwest::Url::parse(&format!("{mailpit}/api/v1/search"))
            .expect("SHOP_MAILPIT_URL is a URL");
        search
            .query_pairs_mut()
            .append_pair("query", &format!("to:\"{address}\""));
        let found: Value = reqwest::get(search)
            .await
            .expect("Mailpit answers")
            .json()
            .await
            .expect("Mailpit's search is JSON");
        let id = found["messages"].as_array().and_then(|messages| {
            messages
                .iter()
                .find(|m| m["Subject"].as_str().is_some_and(|s| s.contains(subject)))
                .and_then(|m| m["ID"].as_str().map(str::to_owned))
        });
        if let Some(id) = id {
            let message: Value = reqwest::get(format!("{mailpit}/api/v1/message/{id}"))
                .await
                .expect("Mailpit answers")
                .json()
                .await
                .expect("a message is JSON");
            return message["Text"].as_str().unwrap_or_default().to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no mail to {address} about {subject:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The token in the link of the mail to `address` whose subject contains `subject`.
pub async fn mailed_token(address: &str, subject: &str) -> String {
    let text = mail_text(address, subject).await;
    let start = text
        .find("token=")
        .unwrap_or_else(|| panic!("no link with a token in {text}"))
        + "token=".len();
    text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}

/// Waits (up to 30 s) until Mailpit holds at least `count` mails for `address`.
pub async fn wait_for_mails(address: &str, count: usize) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let subjects = mails_to(address).await;
        if subjects.len() >= count {
            return subjects;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{address} got {} of {count} mails: {subjects:?}",
            subjects.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// Drives the observer page in headless Chromium (dev/browser/observer.mjs): signs in as the
/// admin, waits for every replica's tree, stops the shopper's cart actor and waits for it to
/// come back. What the script saw (`trees`, `restarts`); the screenshot is kept in
/// target/test-output.
pub async fn observer_page(shopper: &Shopper, screenshot: &str) -> Value {
    let cart_actor = format!("cart:{}", shopper.id);
    // Keep the cart's actor busy enough not to be passivated while the browser looks for it.
    let keep_alive = {
        let (client, token) = (shopper.client.clone(), shopper.token.clone());
        tokio::spawn(async move {
            loop {
                let _ = get(&client, url("/carts/me"), Some(&token)).await;
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        })
    };
    let seen = browser("observer.mjs", &cart_actor, screenshot).await;
    keep_alive.abort();
    seen
}

/// Drives the observer's trace view in headless Chromium (dev/browser/traces.mjs): signs in as
/// the admin and shows the trace of `order_id`. What the script saw (`rows`, `services`,
/// `names`); the screenshot is kept in target/test-output.
pub async fn traces_page(order_id: &str, screenshot: &str) -> Value {
    browser("traces.mjs", order_id, screenshot).await
}

/// Runs dev/browser/SCRIPT in headless Chromium as the admin with `subject` (what it looks
/// for); asserts it succeeded and saved `screenshot` in target/test-output, and returns the
/// JSON it printed.
async fn browser(script: &str, subject: &str, screenshot: &str) -> Value {
    let output_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-output");
    std::fs::create_dir_all(&output_dir).expect("the output folder");
    let screenshot = output_dir.join(screenshot);
    let _ = std::fs::remove_file(&screenshot);
    let output = tokio::process::Command::new("node")
        .arg(format!("dev/browser/{script}"))
        .arg(env("SHOP_GATEWAY_URL"))
        .arg(env("SHOP_ADMIN_EMAIL"))
        .arg(env("SHOP_ADMIN_PASSWORD"))
        .arg(subject)
        .arg(&screenshot)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .await
        .expect("node runs");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{printed}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(screenshot.exists(), "the screenshot is saved");
    serde_json::from_str(printed.trim()).expect("the script prints JSON")
}

/// Runs the `shop` binary with `args` against the test system; asserts it succeeded and
/// returns what it printed.
pub async fn shop(args: &[&str]) -> String {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_shop"))
        .args(args)
        .output()
        .await
        .expect("shop runs");
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "shop {args:?}: {printed}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    printed
}
