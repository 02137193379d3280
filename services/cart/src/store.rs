//! Carts in the MongoDB-compatible store, written whole and guarded by their version.
//!
//! The guard cannot be a conditional update (`replace_one({_id, version})`): FerretDB 1.24 runs
//! those as read-then-write, and four concurrent ones with the same version all "win" (measured:
//! 139 of 150 races). What every store does make atomic is a unique `_id`. So each version of a
//! cart is its own document, `_id: "<user>:<version>"`, and writing version v+1 is an insert that
//! fails with a duplicate key when another process wrote v+1 first. Reading finds the newest
//! version from a head document (a hint, `_id: "<user>"`) and steps forward to the last one that
//! exists. The head moves, and older versions are deleted, when the cart's actor passivates: off
//! the path of every write, which stays one insert.
//! Only `insert_one`, `find_one` by `_id`, `replace_one` by `_id` and `delete_one` by `_id` are
//! used: forms every MongoDB-compatible store agrees on.

use std::future::IntoFuture;
use std::time::Duration;

use bson::doc;
use mongodb::options::{ClientOptions, WriteConcern};
use mongodb::{Client, Collection};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::cart::{Cart, Item};

pub const DATABASE: &str = "shop_cart";
const VERSIONS: &str = "cart_versions";
const HEADS: &str = "cart_heads";

/// Longest a store operation may take. FerretDB has been seen to stop answering requests (after
/// racing upserts of one new document); an actor must not wait for it forever.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
/// Versions looked at past the head before falling back to a scan by user.
const MAX_STEPS: i64 = 64;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Someone else wrote this version first: reload and re-apply.
    #[error("the cart was written by someone else (version race)")]
    Conflict,
    #[error("the cart store: {0}")]
    Unavailable(#[from] mongodb::error::Error),
    #[error("the cart store did not answer within {OPERATION_TIMEOUT:?}")]
    TimedOut,
}

/// One version of a cart, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Version {
    #[serde(rename = "_id")]
    key: String,
    user: String,
    version: i64,
    currency: Option<String>,
    items: Vec<Item>,
    /// Absent in versions written before orders existed.
    #[serde(default)]
    ordered: Vec<String>,
    updated_at: bson::DateTime,
}

/// Where the newest version probably is.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Head {
    #[serde(rename = "_id")]
    user: String,
    version: i64,
}

fn key(user: &str, version: i64) -> String {
    format!("{user}:{version}")
}

impl From<Version> for Cart {
    fn from(stored: Version) -> Self {
        Cart {
            user_id: stored.user,
            version: stored.version,
            currency: stored.currency,
            items: stored.items,
            ordered: stored.ordered,
            updated_at: stored.updated_at,
        }
    }
}

async fn in_time<T>(
    operation: impl std::future::Future<Output = Result<T, mongodb::error::Error>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(OPERATION_TIMEOUT, operation)
        .await
        .map_err(|_| StoreError::TimedOut)?
        .map_err(StoreError::from)
}

#[derive(Clone)]
pub struct CartStore {
    versions: Collection<Version>,
    heads: Collection<Head>,
}

impl CartStore {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let mut options = ClientOptions::parse(url).await?;
        options.app_name = Some("shop-cart".to_owned());
        options.server_selection_timeout = Some(Duration::from_secs(5));
        options.connect_timeout = Some(Duration::from_secs(5));
        // Writes are one per cart at a time (the actor) and batched (group commit); 32
        // connections keep the store busy without flooding it.
        options.max_pool_size = Some(32);
        // Acknowledged only once journaled on a majority: "durable" means durable.
        let mut durable = WriteConcern::majority();
        durable.journal = Some(true);
        options.write_concern = Some(durable);
        let database = Client::with_options(options)?.database(DATABASE);
        Ok(Self {
            versions: database.collection(VERSIONS),
            heads: database.collection(HEADS),
        })
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let database = self.versions.client().database(DATABASE);
        in_time(database.run_command(doc! { "ping": 1 }).into_future()).await?;
        Ok(())
    }

    async fn version(&self, user: &str, version: i64) -> Result<Option<Version>, StoreError> {
        in_time(
            self.versions
                .find_one(doc! { "_id": key(user, version) })
                .into_future(),
        )
        .await
    }

    /// The newest stored version of the user's cart, if there is one.
    pub async fn load(&self, user_id: Uuid) -> Result<Option<Cart>, StoreError> {
        let user = user_id.to_string();
        let head = in_time(self.heads.find_one(doc! { "_id": &user }).into_future())
            .await?
            .map_or(0, |head| head.version);
        let Some(mut newest) = self.version(&user, head.max(1)).await? else {
            if head == 0 {
                return Ok(None);
            }
            // The head points at a version deleted since: rare; ask the slow way.
            return self.scan(&user).await;
        };
        for _ in 0..MAX_STEPS {
            match self.version(&user, newest.version + 1).await? {
                Some(next) => newest = next,
                None => return Ok(Some(newest.into())),
            }
        }
        self.scan(&user).await
    }

    async fn scan(&self, user: &str) -> Result<Option<Cart>, StoreError> {
        let newest = self
            .versions
            .find_one(doc! { "user": user })
            .sort(doc! { "version": -1 });
        Ok(in_time(newest.into_future()).await?.map(Cart::from))
    }

    /// Stores `cart` as version `expected + 1`, unless someone else stored that version first.
    pub async fn write(&self, cart: &Cart, expected: i64) -> Result<(), StoreError> {
        let version = expected + 1;
        let stored = Version {
            key: key(&cart.user_id, version),
            user: cart.user_id.clone(),
            version,
            currency: cart.currency.clone(),
            items: cart.items.clone(),
            ordered: cart.ordered.clone(),
            updated_at: cart.updated_at,
        };
        match in_time(self.versions.insert_one(&stored).into_future()).await {
            Ok(_) => Ok(()),
            Err(StoreError::Unavailable(error)) if is_duplicate_key(&error) => {
                Err(StoreError::Conflict)
            }
            Err(error) => Err(error),
        }
    }

    /// Moves the head to `newest` and deletes the versions from `oldest` up to `newest - 1`.
    /// Best effort: readers cope with a stale head and with versions not deleted yet.
    pub async fn tidy(&self, user_id: Uuid, newest: i64, oldest: i64) {
        let user = user_id.to_string();
        let head = Head {
            user: user.clone(),
            version: newest,
        };
        let replaced = in_time(
            self.heads
                .replace_one(doc! { "_id": &user }, &head)
                .into_future(),
        );
        let moved = match replaced.await {
            // No upsert: FerretDB has stopped answering after racing upserts of one document.
            Ok(result) if result.matched_count == 0 => {
                in_time(self.heads.insert_one(&head).into_future())
                    .await
                    .map(|_| ())
            }
            Ok(_) => Ok(()),
            Err(error) => Err(error),
        };
        if let Err(error) = moved {
            tracing::debug!(%user, newest, %error, "moving the cart head failed");
            return;
        }
        for version in oldest.max(1)..newest {
            let old = self
                .versions
                .delete_one(doc! { "_id": key(&user, version) });
            if let Err(error) = in_time(old.into_future()).await {
                tracing::debug!(%user, version, %error, "deleting an old cart version failed");
                return;
            }
        }
    }
}

fn is_duplicate_key(error: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match error.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(write)) => write.code == 11000,
        ErrorKind::Command(command) => command.code == 11000,
        _ => false,
    }
}
