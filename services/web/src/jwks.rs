//! The user service's public keys, as other services see them: fetched from its JWKS endpoint,
//! cached, and fetched again when a token names a key the cache does not have (the user service
//! rotated its key) — at most once per [`MIN_REFETCH`], so forged `kid`s cannot turn every request
//! into a JWKS fetch.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use tokio::sync::{Mutex, RwLock};

/// Shortest time between two fetches triggered by unknown key ids.
pub const MIN_REFETCH: Duration = Duration::from_secs(10);
/// Keys older than this are refreshed on the next lookup, in case one was withdrawn.
pub const MAX_AGE: Duration = Duration::from_secs(15 * 60);

pub struct JwksCache {
    url: String,
    client: reqwest::Client,
    min_refetch: Duration,
    cached: RwLock<Cached>,
    /// One fetch at a time; the others wait and read its result.
    fetching: Mutex<()>,
}

#[derive(Default)]
struct Cached {
    keys: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
}

impl Cached {
    fn fetched_within(&self, age: Duration) -> bool {
        self.fetched_at.is_some_and(|at| at.elapsed() < age)
    }

    fn fresh(&self, kid: &str) -> Option<DecodingKey> {
        if self.fetched_within(MAX_AGE) {
            self.keys.get(kid).cloned()
        } else {
            None
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("fetching {url}: {source}")]
    Fetch {
        url: String,
        #[source]
        source: reqwest::Error,
    },
}

impl JwksCache {
    pub fn new(url: impl Into<String>, client: reqwest::Client) -> Self {
        Self {
            url: url.into(),
            client,
            min_refetch: MIN_REFETCH,
            cached: RwLock::new(Cached::default()),
            fetching: Mutex::new(()),
        }
    }

    /// Sets the shortest time between two fetches (default [`MIN_REFETCH`]).
    pub fn min_refetch(mut self, interval: Duration) -> Self {
        self.min_refetch = interval;
        self
    }

    /// The key with this id, fetching the key set if it is unknown or stale.
    pub async fn key(&self, kid: &str) -> Option<DecodingKey> {
        if let Some(key) = self.cached.read().await.fresh(kid) {
            return Some(key);
        }
        let _fetching = self.fetching.lock().await;
        {
            let cached = self.cached.read().await;
            // Fetched by another request while this one waited for the lock?
            if let Some(key) = cached.fresh(kid) {
                return Some(key);
            }
            if cached.fetched_within(self.min_refetch) {
                return cached.keys.get(kid).cloned();
            }
        }
        let fetched = self.fetch().await;
        let mut cached = self.cached.write().await;
        // A failed attempt counts too, so a down user service is not asked on every request.
        cached.fetched_at = Some(Instant::now());
        match fetched {
            Ok(keys) => cached.keys = keys,
            Err(error) => {
                tracing::warn!(%error, "could not refresh the JWKS; keeping the keys already known");
            }
        }
        cached.keys.get(kid).cloned()
    }

    async fn fetch(&self) -> Result<HashMap<String, DecodingKey>, JwksError> {
        let wrap = |source| JwksError::Fetch {
            url: self.url.clone(),
            source,
        };
        let set: JwkSet = self
            .client
            .get(&self.url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(wrap)?
            .json()
            .await
            .map_err(wrap)?;
        Ok(ed25519_keys(&set))
    }
}

/// The Ed25519 keys of a set, by kid; anything else in the set is ignored.
pub fn ed25519_keys(set: &JwkSet) -> HashMap<String, DecodingKey> {
    set.keys
        .iter()
        .filter_map(|jwk| {
            let kid = jwk.common.key_id.clone()?;
            match &jwk.algorithm {
                AlgorithmParameters::OctetKeyPair(params)
                    if params.curve == EllipticCurve::Ed25519 =>
                {
                    DecodingKey::from_ed_components(&params.x)
                        .ok()
                        .map(|key| (kid, key))
                }
                _ => None,
            }
        })
        .collect()
}
