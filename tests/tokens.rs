//! Forged, stale and misdirected access tokens are refused, through nginx.

mod common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{client, customer, get_json, problem, url};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The claims the user service would put in a customer's token.
fn claims(subject: &str) -> Value {
    json!({
        "sub": subject,
        "role": "customer",
        "iat": now(),
        "nbf": now(),
        "exp": now() + 600,
        "iss": "shop-user",
        "aud": "shop",
        "jti": uuid::Uuid::new_v4().to_string(),
    })
}

/// The real signing key (dev/test generated it), and the id the JWKS publishes it under.
async fn real_key(client: &reqwest::Client) -> (EncodingKey, String, String) {
    let pem = std::fs::read(common::env("SHOP_JWT_PRIVATE_KEY_FILE")).expect("the signing key");
    let jwks = get_json(client, url("/users/.well-known/jwks.json"), None).await;
    let key = &jwks["keys"][0];
    assert_eq!(key["kty"], "OKP");
    assert_eq!(key["alg"], "EdDSA");
    (
        EncodingKey::from_ed_pem(&pem).unwrap(),
        key["kid"].as_str().unwrap().to_owned(),
        key["x"].as_str().unwrap().to_owned(),
    )
}

fn sign(claims: &Value, key: &EncodingKey, kid: &str) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

async fn me(client: &reqwest::Client, token: &str) -> reqwest::Response {
    client
        .get(url("/users/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
}

/// `token` is refused by the user service for `why`, and by every other service too (each
/// verifies tokens itself).
async fn refused(client: &reqwest::Client, token: &str, why: &str) {
    let body = problem(me(client, token).await, 401).await;
    assert!(
        body["detail"].as_str().unwrap().contains(why),
        "expected {why:?} in {body}"
    );
    for path in ["/carts/me", "/orders", "/payments", "/notifications/me"] {
        let response = client
            .get(url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let body = problem(response, 401).await;
        assert!(body["detail"].is_string(), "GET {path}: {body}");
    }
}

#[tokio::test]
async fn a_token_made_with_the_real_key_and_right_claims_is_accepted() {
    let client = client();
    let user = customer(&client).await;
    let (key, kid, _) = real_key(&client).await;
    let response = me(&client, &sign(&claims(&user.id), &key, &kid)).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn expired_early_misaddressed_and_foreign_tokens_are_refused() {
    let client = client();
    let user = customer(&client).await;
    let (key, kid, _) = real_key(&client).await;

    let mut expired = claims(&user.id);
    expired["iat"] = json!(now() - 1000);
    expired["exp"] = json!(now() - 120);
    refused(&client, &sign(&expired, &key, &kid), "expired").await;

    let mut early = claims(&user.id);
    early["nbf"] = json!(now() + 600);
    refused(&client, &sign(&early, &key, &kid), "not valid yet").await;

    let mut audience = claims(&user.id);
    audience["aud"] = json!("another-shop");
    refused(&client, &sign(&audience, &key, &kid), "audience").await;

    let mut issuer = claims(&user.id);
    issuer["iss"] = json!("somebody-else");
    refused(&client, &sign(&issuer, &key, &kid), "issuer").await;

    // Another Ed25519 key, claiming to be the real one.
    let other =
        aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
            .unwrap();
    let other = EncodingKey::from_ed_der(other.as_ref());
    refused(&client, &sign(&claims(&user.id), &other, &kid), "signature").await;
    refused(
        &client,
        &sign(&claims(&user.id), &other, "made-up-kid"),
        "unknown key",
    )
    .await;
}

#[tokio::test]
async fn unsigned_and_hmac_tokens_are_refused() {
    let client = client();
    let user = customer(&client).await;
    let (_, kid, public_x) = real_key(&client).await;
    let mut admin_claims = claims(&user.id);
    admin_claims["role"] = json!("admin");

    let none = format!(
        "{}.{}.",
        b64(&json!({ "alg": "none", "typ": "JWT", "kid": kid })),
        b64(&admin_claims)
    );
    refused(&client, &none, "EdDSA").await;

    // HS256 with the public key as the secret: the classic algorithm-confusion forgery.
    let public = URL_SAFE_NO_PAD.decode(&public_x).unwrap();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.clone());
    let hmac =
        jsonwebtoken::encode(&header, &admin_claims, &EncodingKey::from_secret(&public)).unwrap();
    refused(&client, &hmac, "EdDSA").await;
    let hmac_x = jsonwebtoken::encode(
        &header,
        &admin_claims,
        &EncodingKey::from_secret(public_x.as_bytes()),
    )
    .unwrap();
    refused(&client, &hmac_x, "EdDSA").await;
}

#[tokio::test]
async fn a_token_whose_payload_was_changed_is_refused() {
    let client = client();
    let user = customer(&client).await;
    let parts: Vec<&str> = user.access_token.split('.').collect();
    let mut payload: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    assert_eq!(payload["role"], "customer");
    payload["role"] = json!("admin");
    let tampered = format!("{}.{}.{}", parts[0], b64(&payload), parts[2]);
    refused(&client, &tampered, "signature").await;
    refused(&client, "not-a-token", "malformed").await;
}

#[tokio::test]
async fn a_service_token_is_issued_for_a_known_client_and_is_no_user() {
    let client = client();
    let response = client
        .post(url("/users/service-token"))
        .json(&json!({ "client_id": "shop-services", "client_secret": "dev-service-secret" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let token: Value = response.json().await.unwrap();
    let access = token["access_token"].as_str().unwrap();
    let payload = access.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert_eq!(claims["role"], "service");
    assert_eq!(claims["sub"], "shop-services");
    assert!(claims["exp"].as_i64().unwrap() - now() <= 300);
    problem(me(&client, access).await, 403).await;
}
