//! Tokens: Ed25519-signed access tokens (with the public key published as a JWKS), and opaque
//! refresh tokens of which only a hash is stored.

use std::path::Path;
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm,
    OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse, ThumbprintHash,
};
use jsonwebtoken::{DecodingKey, EncodingKey, Header};
use sha2::{Digest, Sha256};
use shop_web::auth::ALGORITHM;
use shop_web::{Claims, Role};
use uuid::Uuid;

const PEM_TAG: &str = "PRIVATE KEY";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("reading the signing key {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("writing a new signing key to {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the signing key {path} is not an Ed25519 PKCS#8 PEM key: {reason}")]
    Invalid { path: String, reason: String },
    #[error("generating a signing key failed")]
    Generate,
}

/// The user service's signing key, and what others need to check its signatures.
pub struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Jwk,
}

impl SigningKey {
    /// Loads the key at `path`; when there is none and `may_generate` (dev), generates one there.
    pub fn load_or_generate(path: &Path, may_generate: bool) -> Result<Self, KeyError> {
        let shown = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(pem) => Self::from_pem(&pem).map_err(|reason| KeyError::Invalid {
                path: shown,
                reason,
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound && may_generate => {
                let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                    .map_err(|_| KeyError::Generate)?;
                let pem = pem::encode(&pem::Pem::new(PEM_TAG, pkcs8.as_ref().to_vec()));
                let won = write_private(path, &pem).map_err(|source| KeyError::Write {
                    path: shown.clone(),
                    source,
                })?;
                if !won {
                    // Another replica generated one at the same moment: everyone uses that.
                    return Self::load_or_generate(path, false);
                }
                tracing::info!(path = %shown, "generated a new token signing key");
                Self::from_pem(&pem).map_err(|reason| KeyError::Invalid {
                    path: shown,
                    reason,
                })
            }
            Err(source) => Err(KeyError::Read {
                path: shown,
                source,
            }),
        }
    }

    pub fn from_pem(text: &str) -> Result<Self, String> {
        let parsed = pem::parse(text).map_err(|error| error.to_string())?;
        if parsed.tag() != PEM_TAG {
            return Err(format!(
                "expected a {PEM_TAG} block, found {}",
                parsed.tag()
            ));
        }
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(parsed.contents())
            .map_err(|error| error.to_string())?;
        let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        let mut jwk = Jwk {
            common: CommonParameters {
                public_key_use: Some(PublicKeyUse::Signature),
                key_algorithm: Some(KeyAlgorithm::EdDSA),
                ..CommonParameters::default()
            },
            algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                key_type: OctetKeyPairType::OctetKeyPair,
                curve: EllipticCurve::Ed25519,
                x,
            }),
        };
        // The RFC 7638 thumbprint names the key: stable for a key, new for a new one.
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|error| error.to_string())?;
        jwk.common.key_id = Some(kid.clone());
        Ok(Self {
            kid,
            encoding: EncodingKey::from_ed_der(parsed.contents()),
            jwk,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: vec![self.jwk.clone()],
        }
    }

    pub fn decoding_key(&self) -> Result<DecodingKey, jsonwebtoken::errors::Error> {
        DecodingKey::from_jwk(&self.jwk)
    }

    pub fn sign(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = Header::new(ALGORITHM);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding)
    }
}

/// Puts `pem` at `path` unless a key is there already (false then). Written whole to a draft
/// first and linked into place, so replicas starting at once never read half a key and all end
/// up with the one that got there first.
fn write_private(path: &Path, pem: &str) -> std::io::Result<bool> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let parent = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let draft = parent.join(format!(".draft-{}", Uuid::new_v4().simple()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&draft)?;
    let linked = file
        .write_all(pem.as_bytes())
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::hard_link(&draft, path));
    let _ = std::fs::remove_file(&draft);
    match linked {
        Ok(()) => Ok(true),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(error) => Err(error),
    }
}

/// What a token is issued for.
pub struct TokenPolicy {
    pub issuer: String,
    pub audience: String,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
    pub service_ttl: Duration,
}

impl TokenPolicy {
    pub fn claims(&self, subject: String, role: Role, ttl: Duration) -> Claims {
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        Claims {
            sub: subject,
            role,
            exp: now + ttl.as_secs(),
            iat: now,
            nbf: Some(now),
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            jti: Uuid::new_v4().to_string(),
        }
    }
}

/// A new refresh token: what the client gets, and the hash the database keeps.
/// A random token (256 bits, base64url) of which only a SHA-256 is stored: refresh tokens and
/// the single-use tokens of account mails.
pub struct OpaqueToken {
    pub token: String,
    pub hash: Vec<u8>,
}

impl OpaqueToken {
    pub fn generate() -> Self {
        let bytes: [u8; 32] = rand::random();
        let token = URL_SAFE_NO_PAD.encode(bytes);
        let hash = Self::hash_of(&token);
        Self { token, hash }
    }

    pub fn hash_of(token: &str) -> Vec<u8> {
        Sha256::digest(token.as_bytes()).to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shop_web::TokenVerifier;

    fn policy() -> TokenPolicy {
        TokenPolicy {
            issuer: "shop-user".into(),
            audience: "shop".into(),
            access_ttl: Duration::from_secs(900),
            refresh_ttl: Duration::from_secs(3600),
            service_ttl: Duration::from_secs(300),
        }
    }

    fn temp_key_path() -> std::path::PathBuf {
        std::env::temp_dir()
            .join(format!("shop-key-test-{}", Uuid::new_v4()))
            .join("jwt.pem")
    }

    #[tokio::test]
    async fn a_signed_token_verifies_with_the_published_key_only() {
        let path = temp_key_path();
        let key = SigningKey::load_or_generate(&path, true).unwrap();
        let claims = policy().claims(
            Uuid::new_v4().to_string(),
            Role::Customer,
            policy().access_ttl,
        );
        let token = key.sign(&claims).unwrap();

        let published = shop_web::jwks::ed25519_keys(&key.jwks());
        let verifier = TokenVerifier::with_local_keys("shop-user", "shop", published);
        assert_eq!(verifier.verify(&token).await.unwrap(), claims);

        let other = SigningKey::load_or_generate(&temp_key_path(), true).unwrap();
        let other_verifier = TokenVerifier::with_local_keys(
            "shop-user",
            "shop",
            shop_web::jwks::ed25519_keys(&other.jwks()),
        );
        assert!(other_verifier.verify(&token).await.is_err());
    }

    #[test]
    fn a_generated_key_is_kept_private_and_loaded_again_unchanged() {
        use std::os::unix::fs::PermissionsExt;
        let path = temp_key_path();
        let first = SigningKey::load_or_generate(&path, true).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = SigningKey::load_or_generate(&path, false).unwrap();
        assert_eq!(first.kid(), again.kid());
    }

    #[test]
    fn replicas_generating_the_key_at_once_all_get_the_same_one() {
        let path = temp_key_path();
        let kids: Vec<String> = std::thread::scope(|scope| {
            let starts: Vec<_> = (0..8)
                .map(|_| scope.spawn(|| SigningKey::load_or_generate(&path, true)))
                .collect();
            starts
                .into_iter()
                .map(|start| start.join().unwrap().unwrap().kid().to_owned())
                .collect()
        });
        assert!(kids.iter().all(|kid| kid == &kids[0]), "{kids:?}");
        let stored = SigningKey::load_or_generate(&path, false).unwrap();
        assert_eq!(stored.kid(), kids[0]);
        let left: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(left.len(), 1, "no draft is left behind");
    }

    #[test]
    fn a_missing_key_is_an_error_outside_dev() {
        let error = SigningKey::load_or_generate(&temp_key_path(), false)
            .err()
            .unwrap();
        assert!(matches!(error, KeyError::Read { .. }));
    }

    #[test]
    fn refresh_tokens_are_random_and_stored_only_as_a_hash() {
        let a = OpaqueToken::generate();
        let b = OpaqueToken::generate();
        assert_ne!(a.token, b.token);
        assert_eq!(a.token.len(), 43);
        assert_eq!(OpaqueToken::hash_of(&a.token), a.hash);
        assert_ne!(a.hash, a.token.as_bytes());
    }
}
