//! Token verification against a JWKS served over HTTP by a local server the test starts: keys are
//! fetched, cached, fetched again when a token names a new key (a rotation), and not fetched on
//! every forged key id.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::{Data, Json};
use poem::{EndpointExt, Route, Server, handler};
use serde_json::{Value, json};
use shop_web::TokenVerifier;
use shop_web::auth::TokenError;
use shop_web::jwks::JwksCache;
use tokio::sync::RwLock;

struct Key {
    kid: String,
    encoding: EncodingKey,
    jwk: Value,
}

fn new_key(kid: &str) -> Key {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    Key {
        kid: kid.to_owned(),
        encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
        jwk: json!({
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
        }),
    }
}

fn token(key: &Key) -> String {
    let now = chrono::Utc::now().timestamp();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(key.kid.clone());
    let claims = json!({
        "sub": uuid::Uuid::new_v4().to_string(), "role": "customer", "iat": now, "exp": now + 60,
        "iss": "shop-user", "aud": "shop", "jti": "j",
    });
    jsonwebtoken::encode(&header, &claims, &key.encoding).unwrap()
}

const REFETCH: std::time::Duration = std::time::Duration::from_millis(300);

#[derive(Clone)]
struct Published {
    keys: Arc<RwLock<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
}

#[handler]
async fn jwks(Data(published): Data<&Published>) -> Json<Value> {
    published.fetches.fetch_add(1, Ordering::SeqCst);
    Json(json!({ "keys": *published.keys.read().await }))
}

async fn serve(published: Published) -> String {
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .unwrap();
    let addr = acceptor.local_addr()[0]
        .to_string()
        .replace("socket://", "");
    let app = Route::new()
        .at("/users/.well-known/jwks.json", poem::get(jwks))
        .data(published);
    tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
    format!("http://{addr}/users/.well-known/jwks.json")
}

#[tokio::test]
async fn keys_are_fetched_once_refetched_after_a_rotation_and_not_for_every_unknown_kid() {
    let first = new_key("first");
    let published = Published {
        keys: Arc::new(RwLock::new(vec![first.jwk.clone()])),
        fetches: Arc::new(AtomicUsize::new(0)),
    };
    let url = serve(published.clone()).await;
    let verifier = TokenVerifier::with_jwks(
        "shop-user",
        "shop",
        JwksCache::new(url, reqwest::Client::new()).min_refetch(REFETCH),
    );

    for _ in 0..5 {
        assert!(verifier.verify(&token(&first)).await.is_ok());
    }
    assert_eq!(
        published.fetches.load(Ordering::SeqCst),
        1,
        "cached after one fetch"
    );

    // Within the minimum interval after a fetch, an unknown kid fetches nothing.
    let forged = new_key("forged");
    assert_eq!(
        verifier.verify(&token(&forged)).await,
        Err(TokenError::UnknownKey)
    );
    assert_eq!(published.fetches.load(Ordering::SeqCst), 1);

    // After it, a token signed by a key nobody published is refused; the set is fetched once
    // for it, and a flood of such tokens does not turn into a flood of fetches.
    tokio::time::sleep(REFETCH).await;
    for _ in 0..20 {
        assert_eq!(
            verifier.verify(&token(&forged)).await,
            Err(TokenError::UnknownKey)
        );
    }
    assert_eq!(published.fetches.load(Ordering::SeqCst), 2);

    // The user service rotates to a new key. Right after the last fetch it is not fetched yet;
    // once the minimum interval has passed, a token with the new kid makes the cache fetch.
    let second = new_key("second");
    published.keys.write().await.push(second.jwk.clone());
    tokio::time::sleep(REFETCH).await;
    assert!(verifier.verify(&token(&second)).await.is_ok());
    assert!(verifier.verify(&token(&first)).await.is_ok());
    assert_eq!(published.fetches.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn when_the_key_server_is_down_known_keys_keep_working_and_unknown_ones_are_refused() {
    let key = new_key("only");
    let published = Published {
        keys: Arc::new(RwLock::new(vec![key.jwk.clone()])),
        fetches: Arc::new(AtomicUsize::new(0)),
    };
    let url = serve(published).await;
    let verifier = TokenVerifier::with_jwks(
        "shop-user",
        "shop",
        JwksCache::new(url, reqwest::Client::new()),
    );
    assert!(verifier.verify(&token(&key)).await.is_ok());

    let nowhere = TokenVerifier::with_jwks(
        "shop-user",
        "shop",
        JwksCache::new("http://127.0.0.1:9/jwks.json", reqwest::Client::new()),
    );
    assert_eq!(
        nowhere.verify(&token(&key)).await,
        Err(TokenError::UnknownKey)
    );
}
