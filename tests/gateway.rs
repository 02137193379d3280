//! The gateway (nginx) and the operator endpoints every service has.

mod common;

use common::{client, customer, get, get_json, post_oversized, problem, url};
use reqwest::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn a_login_brute_force_is_stopped_with_429_before_twenty_tries() {
    let client = client();
    let mut first_refusal = None;
    for attempt in 1..=30 {
        let response = common::login(&client, "victim@shop.test", "guess-number-x").await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(response.headers().contains_key("retry-after"));
            let body = problem(response, 429).await;
            assert!(body["detail"].as_str().unwrap().contains("too many"));
            first_refusal = Some(attempt);
            break;
        }
        problem(response, 401).await;
    }
    let attempt = first_refusal.expect("no 429 in 30 rapid logins");
    assert!(attempt < 20, "first 429 at attempt {attempt}");
}

#[tokio::test]
async fn another_client_is_not_slowed_by_a_brute_force() {
    let attacker = client();
    for _ in 0..25 {
        let _ = common::login(&attacker, "victim@shop.test", "guess-number-x").await;
    }
    // Another client, another account (the account itself is throttled by now, for everyone:
    // see tests/users.rs).
    let bystander = client();
    problem(
        common::login(&bystander, &common::unique_email(), "guess-number-y").await,
        401,
    )
    .await;
}

/// A client bound to `address` (127.0.0.1 is the one proxy dev/test trusts).
fn client_at(address: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(address))
        .build()
        .expect("a reqwest client builds")
}

/// 25 failed logins sent at once (each for a new address, so the account throttle stays out
/// of it), the nth claiming `forwarded_for(n)`: how many the gateway refused with 429.
async fn refused_of_a_burst(
    client: &reqwest::Client,
    forwarded_for: impl Fn(usize) -> String,
) -> usize {
    let tries = (1..=25).map(|n| {
        client
            .post(url("/users/login"))
            .header("x-forwarded-for", forwarded_for(n))
            .json(&serde_json::json!({ "email": common::unique_email(), "password": "guess" }))
            .send()
    });
    futures::future::join_all(tries)
        .await
        .into_iter()
        .map(|answer| answer.expect("the gateway answers").status())
        .filter(|status| *status == StatusCode::TOO_MANY_REQUESTS)
        .count()
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_gets_its_own_limit() {
    let proxy = client_at([127, 0, 0, 1]);
    let attacker = format!("203.0.113.{}", rand::random::<u8>().max(1));
    // Burst 10: of 25 at once, the rest are refused.
    let refused = refused_of_a_burst(&proxy, |_| attacker.clone()).await;
    assert!(
        refused >= 10,
        "the forwarded client was limited: {refused} of 25 refused"
    );
    // Another client behind the same proxy is not.
    let neighbour = format!("198.51.100.{}", rand::random::<u8>().max(1));
    let answered = proxy
        .post(url("/users/login"))
        .header("x-forwarded-for", &neighbour)
        .json(&serde_json::json!({ "email": common::unique_email(), "password": "guess" }))
        .send()
        .await
        .unwrap();
    problem(answered, 401).await;
}

#[tokio::test]
async fn an_untrusted_peer_cannot_dodge_its_limit_by_claiming_other_addresses() {
    // Any loopback address but 127.0.0.1 is not a trusted proxy.
    let peer = client();
    let refused = refused_of_a_burst(&peer, |n| format!("192.0.2.{n}")).await;
    assert!(
        refused >= 10,
        "a new X-Forwarded-For on every try still hit the peer's limit: {refused} of 25 refused"
    );
}

#[tokio::test]
async fn a_preflight_from_an_allowed_origin_is_answered_and_a_foreign_one_refused() {
    let client = client();
    let allowed = client
        .request(reqwest::Method::OPTIONS, url("/users/login"))
        .header("origin", "http://localhost:3000")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), StatusCode::NO_CONTENT);
    let headers = allowed.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "http://localhost:3000"
    );
    assert_eq!(headers["access-control-allow-credentials"], "true");
    assert!(
        headers["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    assert!(headers["vary"].to_str().unwrap().contains("Origin"));

    let refused = client
        .request(reqwest::Method::OPTIONS, url("/users/login"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(
        !refused
            .headers()
            .contains_key("access-control-allow-origin")
    );
    problem(refused, 403).await;

    // An actual request from an allowed origin carries the header; from a foreign one, not.
    let jwks = client
        .get(url("/users/.well-known/jwks.json"))
        .header("origin", "http://127.0.0.1:5173")
        .send()
        .await
        .unwrap();
    assert_eq!(
        jwks.headers()["access-control-allow-origin"],
        "http://127.0.0.1:5173"
    );
    let foreign = client
        .get(url("/users/.well-known/jwks.json"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), StatusCode::OK);
    assert!(
        !foreign
            .headers()
            .contains_key("access-control-allow-origin")
    );
}

#[tokio::test]
async fn a_request_id_is_passed_through_or_made_and_shows_in_problems() {
    let client = client();
    let given = client
        .get(url("/users/me"))
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .unwrap();
    assert_eq!(given.headers()["x-request-id"], "trace-me-123");
    let body = problem(given, 401).await;
    assert_eq!(body["request_id"], "trace-me-123");

    let made = client.get(url("/users/me")).send().await.unwrap();
    let id = made.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert!(id.len() >= 16);
    // One header, not one from nginx and one from the service.
    assert_eq!(made.headers().get_all("x-request-id").iter().count(), 1);

    let junk = client
        .get(url("/users/me"))
        .header("x-request-id", "has spaces; and=junk")
        .send()
        .await
        .unwrap();
    assert_ne!(junk.headers()["x-request-id"], "has spaces; and=junk");
}

#[tokio::test]
async fn the_gateway_answers_its_own_errors_as_problems() {
    let client = client();
    problem(client.get(url("/nothing-here")).send().await.unwrap(), 404).await;
    problem(
        client.get(url("/internal/anything")).send().await.unwrap(),
        404,
    )
    .await;
    problem(
        client
            .get(url("/users/no/such/route"))
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    let too_big = post_oversized(&client, url("/users/register"), 200 * 1024).await;
    problem(too_big, 413).await;
}

#[tokio::test]
async fn a_service_refuses_a_body_over_its_own_limit_too() {
    let register = format!("{}/users/register", common::user_service());
    let response = post_oversized(&reqwest::Client::new(), register, 100 * 1024).await;
    problem(response, 413).await;
}

#[tokio::test]
async fn health_readiness_and_metrics_are_served() {
    let client = reqwest::Client::new();
    let service = common::user_service();
    let health = get_json(&client, format!("{service}/health"), None).await;
    assert_eq!(health["status"], "alive");
    let ready = get_json(&client, format!("{service}/ready"), None).await;
    assert_eq!(ready["status"], "ready");
    let _ = get(&client, url("/users/.well-known/jwks.json"), None).await;
    let metrics = client
        .get(format!("{service}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .contains(r#"shop_http_requests_total{operation="jwks",service="user",status="200"}"#),
        "{metrics}"
    );
    let spec = get_json(&client, url("/users/openapi.json"), None).await;
    assert!(spec["paths"]["/users/login"]["post"].is_object());
    let problem_schema = &spec["components"]["schemas"]["Problem"];
    assert!(
        problem_schema["properties"]["request_id"].is_object(),
        "{problem_schema}"
    );
    let docs = client.get(url("/users/docs")).send().await.unwrap();
    assert_eq!(docs.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_supervision_tree_is_shown_to_an_admin_only() {
    let client = client();
    let tree_url = format!("{}/admin/tree", common::user_service());
    problem(reqwest::get(&tree_url).await.unwrap(), 401).await;
    let customer = customer(&client).await;
    let as_customer = get(
        &reqwest::Client::new(),
        &tree_url,
        Some(&customer.access_token),
    )
    .await;
    problem(as_customer, 403).await;

    let admin = common::admin(&client).await;
    let tree = get_json(
        &reqwest::Client::new(),
        &tree_url,
        Some(&admin.access_token),
    )
    .await;
    assert_eq!(tree["name"], "user");
    assert_eq!(tree["kind"], "supervisor");
    let children: Vec<&Value> = tree["children"].as_array().unwrap().iter().collect();
    let names: Vec<&str> = children
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"user.hasher") && names.contains(&"user.http"),
        "{names:?}"
    );
    let pool = children
        .iter()
        .find(|c| c["name"] == "user.hasher")
        .unwrap();
    assert_eq!(pool["kind"], "pool");
    assert_eq!(pool["restart"], "permanent");
    let workers = pool["children"].as_array().unwrap();
    assert!(!workers.is_empty() && workers.iter().all(|w| w["kind"] == "worker"));
    assert!(tree["started_at"].is_string());

    let bad_query = get(
        &reqwest::Client::new(),
        format!("{tree_url}?sample=lots"),
        Some(&admin.access_token),
    )
    .await;
    problem(bad_query, 400).await;
}

#[tokio::test]
async fn shop_tree_prints_the_user_services_tree_with_its_hashing_pool() {
    let printed = common::shop(&["tree"]).await;
    let lines: Vec<&str> = printed.lines().collect();
    assert!(
        lines[0].starts_with("user [supervisor] running"),
        "{printed}"
    );
    assert!(
        printed.contains("── user.hasher [pool] running"),
        "{printed}"
    );
    assert!(
        printed.contains("│   ├── - [worker] running")
            || printed.contains("│   └── - [worker] running"),
        "{printed}"
    );
    assert!(printed.contains("── user.http [http] running"), "{printed}");
}

#[tokio::test]
async fn shop_tree_all_prints_every_services_tree() {
    let printed = common::shop(&["tree", "--all"]).await;
    for service in common::SERVICES {
        assert!(
            printed.contains(&format!("== {service}  http")),
            "{printed}"
        );
        assert!(
            printed.contains(&format!("\n{service} [supervisor] running restarts=")),
            "{service}: {printed}"
        );
    }
    assert!(
        printed.contains("── payment.registry [registry] running"),
        "{printed}"
    );
    assert!(
        printed.contains("── notification.bridge [bridge] running"),
        "{printed}"
    );
    assert!(
        !printed.contains('\x1b'),
        "no colours when not on a terminal"
    );

    let refused = tokio::process::Command::new(env!("CARGO_BIN_EXE_shop"))
        .args(["tree", "--all", "--json"])
        .output()
        .await
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
}

#[tokio::test]
async fn shop_config_prints_settings_without_secrets() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_shop"))
        .arg("config")
        .output()
        .await
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success());
    assert!(printed.contains("SHOP_USER_PORT"));
    assert!(
        !printed.contains(&common::env("SHOP_ADMIN_PASSWORD")),
        "{printed}"
    );
    assert!(!printed.contains("dev-service-secret"), "{printed}");
    assert!(!printed.contains(":shop@"), "{printed}");

    let refused = tokio::process::Command::new(env!("CARGO_BIN_EXE_shop"))
        .arg("config")
        .env("SHOP_USER_PORT", "not-a-port")
        .output()
        .await
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let error = String::from_utf8_lossy(&refused.stderr);
    assert!(
        error.contains("SHOP_USER_PORT: expected a port number"),
        "{error}"
    );
}

#[tokio::test]
async fn the_openapi_document_lists_problem_answers_for_operations() {
    let spec = get_json(&client(), url("/users/openapi.json"), None).await;
    let register = &spec["paths"]["/users/register"]["post"]["responses"];
    assert!(register["201"].is_object());
    assert!(
        register["422"]["content"]["application/problem+json"].is_object(),
        "{register}"
    );
}
