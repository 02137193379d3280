//! Carts in the MongoDB-compatible store, written whole and guarded by their version.
//!
//! The guard cannot be a conditional update (`replace_one({_id, version})`): FerretDB 1.24 runs
//! those as read-then-write, and four concurrent ones with the same version all "win" (measured:
//! 139 of 150 races). What every store does make atomic is a unique `_id`. So each version of a
//! cart is its own document, `_id: "<user>:<version>"`, and writing version v+1 is an insert that
//! fails with a duplicate key when another process wrote v+1 first. Reading finds the newest
//! version from a head document (a hint, `_id: "<user>"`) and searches forward to the last one
//! that exists. The head moves, and older versions are deleted, when the cart's actor
//! passivates: off the path of every write, which stays one insert (plus one look at the head
//! when the writer may be far behind, see [`CartStore::write`]).
//! Versions are inserted by one gatherer per process (see [`Inserts`]): the writes of many carts
//! that arrive together go out as one unordered `insert_many`, and each cart hears only about its
//! own document. The writes and the reads on a cart's path are `insert_many`, `insert_one`,
//! `find_one` by `_id`, `replace_one` by `_id` and `delete_one` by `_id`: forms every
//! MongoDB-compatible store agrees on. Off that path, a price change asks which carts hold a
//! product (`items.product_id`) and a lost head is found by `user`: both have an index
//! (see [`CartStore::ping`]).

use std::collections::HashMap;
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use bson::doc;
use mongodb::event::EventHandler;
use mongodb::event::command::CommandEvent;
use mongodb::options::{ClientOptions, WriteConcern};
use mongodb::{Client, Collection};
use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, mpsc, oneshot};
use uuid::Uuid;

use crate::cart::{Cart, Item};

pub const DATABASE: &str = "shop_cart";
const VERSIONS: &str = "cart_versions";
const HEADS: &str = "cart_heads";

/// Longest a store operation may take. FerretDB has been seen to stop answering requests (after
/// racing upserts of one new document); an actor must not wait for it forever.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);
/// Searches for the newest version before falling back to a scan by user: more are needed only
/// when tidies keep moving the head while the search runs.
const MAX_SEARCHES: usize = 3;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Someone else wrote this version first: reload and re-apply.
    #[error("the cart was written by someone else (version race)")]
    Conflict,
    #[error("the cart store: {0}")]
    Unavailable(#[from] mongodb::error::Error),
    #[error("the cart store did not answer within {OPERATION_TIMEOUT:?}")]
    TimedOut,
    #[error("the cart store's writer has stopped")]
    WriterGone,
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

impl Version {
    fn from_cart(cart: &Cart, version: i64) -> Self {
        Self {
            key: key(&cart.user_id, version),
            user: cart.user_id.clone(),
            version,
            currency: cart.currency.clone(),
            items: cart.items.clone(),
            ordered: cart.ordered.clone(),
            updated_at: cart.updated_at,
        }
    }
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
    inserts: Inserts,
    /// Set once the indexes exist (made by the first readiness check that reaches the store).
    indexed: Arc<tokio::sync::OnceCell<()>>,
}

/// Largest batch of versions in one `insert_many`.
const BATCH_MAX: usize = 256;
/// Batches in flight at once: while they are, new versions queue up into the next batch.
const BATCHES_IN_FLIGHT: usize = 4;

/// The process's gatherer of version inserts. A version waits only while [`BATCHES_IN_FLIGHT`]
/// batches are out already (no timer): alone, it goes out at once; under load, the versions of
/// many carts share one round trip and one commit, as one hot cart's changes share a version.
#[derive(Clone)]
struct Inserts {
    queue: mpsc::UnboundedSender<Insert>,
}

struct Insert {
    version: Version,
    done: oneshot::Sender<Result<(), StoreError>>,
}

impl Inserts {
    fn start(versions: Collection<Version>) -> Self {
        let (queue, waiting) = mpsc::unbounded_channel();
        tokio::spawn(gather(versions, waiting));
        Self { queue }
    }

    /// Stores the version; `Conflict` when that version of the cart exists already.
    async fn insert(&self, version: Version) -> Result<(), StoreError> {
        let (done, outcome) = oneshot::channel();
        self.queue
            .send(Insert { version, done })
            .map_err(|_| StoreError::WriterGone)?;
        outcome.await.map_err(|_| StoreError::WriterGone)?
    }
}

async fn gather(versions: Collection<Version>, mut waiting: mpsc::UnboundedReceiver<Insert>) {
    let in_flight = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT));
    loop {
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = waiting.recv().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < BATCH_MAX {
            match waiting.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let versions = versions.clone();
        tokio::spawn(async move {
            insert_batch(&versions, batch).await;
            drop(permit);
        });
    }
}

/// One unordered `insert_many`: a duplicate version fails only its own cart (a conflict); the
/// others are stored and answered.
async fn insert_batch(versions: &Collection<Version>, batch: Vec<Insert>) {
    crate::metrics::VERSIONS_PER_INSERT.observe(batch.len() as f64);
    let documents = batch.iter().map(|insert| &insert.version);
    let outcome = in_time(versions.insert_many(documents).ordered(false).into_future()).await;
    let failed: HashMap<usize, StoreError> = match outcome {
        Ok(_) => HashMap::new(),
        Err(StoreError::Unavailable(error)) => match error.kind.as_ref() {
            // Written, but not acknowledged as durable: none of them counts as stored.
            mongodb::error::ErrorKind::InsertMany(failure)
                if failure.write_concern_error.is_none() =>
            {
                let each = failure.write_errors.iter().flatten();
                each.map(|failed| {
                    let why = if failed.code == DUPLICATE_KEY {
                        StoreError::Conflict
                    } else {
                        StoreError::Unavailable(error.clone())
                    };
                    (failed.index, why)
                })
                .collect()
            }
            _ => (0..batch.len())
                .map(|index| (index, StoreError::Unavailable(error.clone())))
                .collect(),
        },
        Err(error) => (0..batch.len())
            .map(|index| (index, error.clone()))
            .collect(),
    };
    for (index, insert) in batch.into_iter().enumerate() {
        let result = failed.get(&index).map_or(Ok(()), |why| Err(why.clone()));
        let _ = insert.done.send(result);
    }
}

fn command_span(event: CommandEvent) {
    let (name, took, failed) = match &event {
        CommandEvent::Succeeded(done) => (&done.command_name, done.duration, false),
        CommandEvent::Failed(failed) => (&failed.command_name, failed.duration, true),
        _ => return,
    };
    shop_telemetry::statement_span("mongodb", name, None, took, failed);
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
        // Each command a span of the trace it runs in. Only when tracing: the driver builds its
        // command events (a copy of each reply among them) only for a handler.
        if shop_telemetry::enabled() {
            options.command_event_handler = Some(EventHandler::callback(command_span));
        }
        let database = Client::with_options(options)?.database(DATABASE);
        let versions = database.collection(VERSIONS);
        Ok(Self {
            inserts: Inserts::start(versions.clone()),
            versions,
            heads: database.collection(HEADS),
            indexed: Arc::default(),
        })
    }

    /// Whether the store answers, and has the indexes. The service starts without the store
    /// (it is found lazily), so the indexes are made here, once, by the first readiness check
    /// that reaches it: until they exist the replica is not ready. Every replica does it; the
    /// first makes them.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let database = self.versions.client().database(DATABASE);
        in_time(database.run_command(doc! { "ping": 1 }).into_future()).await?;
        self.indexed
            .get_or_try_init(|| self.create_indexes())
            .await?;
        Ok(())
    }

    async fn create_indexes(&self) -> Result<(), StoreError> {
        use mongodb::IndexModel;
        use mongodb::options::IndexOptions;
        let named = |keys, name: &str| {
            IndexModel::builder()
                .keys(keys)
                .options(IndexOptions::builder().name(name.to_owned()).build())
                .build()
        };
        let indexes = [
            // Which carts hold a product (`users_holding`), on every price change: without it,
            // a scan of every stored version.
            named(doc! { "items.product_id": 1 }, "items_product_id"),
            // A cart's newest version when its head is lost (`scan`).
            named(doc! { "user": 1, "version": -1 }, "user_newest"),
        ];
        // Only those missing: FerretDB 1.24 drops the connection when asked to make a compound
        // index that exists (a panic in its handler). Two replicas making one at once: the
        // second's check fails, it is not ready yet, and its next check finds the index.
        let existing = match in_time(self.versions.list_index_names().into_future()).await {
            Ok(names) => names,
            // A new store: MongoDB has no collection before the first cart is written.
            Err(StoreError::Unavailable(error))
                if matches!(error.kind.as_ref(),
                    mongodb::error::ErrorKind::Command(failed) if failed.code == NAMESPACE_NOT_FOUND) =>
            {
                Vec::new()
            }
            Err(error) => return Err(error),
        };
        for index in indexes {
            let name = index
                .options
                .as_ref()
                .and_then(|options| options.name.clone());
            if name.is_some_and(|name| existing.contains(&name)) {
                continue;
            }
            in_time(self.versions.create_index(index).into_future()).await?;
        }
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

    async fn head(&self, user: &str) -> Result<i64, StoreError> {
        Ok(
            in_time(self.heads.find_one(doc! { "_id": user }).into_future())
                .await?
                .map_or(0, |head| head.version),
        )
    }

    /// The newest stored version of the user's cart, if there is one.
    pub async fn load(&self, user_id: Uuid) -> Result<Option<Cart>, StoreError> {
        let user = user_id.to_string();
        let mut head = self.head(&user).await?;
        for _ in 0..MAX_SEARCHES {
            let found = self.search_from(&user, head).await?;
            // A tidy moves the head, then deletes the versions behind it: a search from the old
            // head may have met one just deleted and stopped short. If the head has moved past
            // what was found, search again from there.
            let now = self.head(&user).await?;
            match found {
                Some(newest) if newest.version >= now => return Ok(Some(newest.into())),
                None if now == 0 => return Ok(None),
                _ if now > head => head = now,
                // The head points at a version deleted since (two tidies crossed): rare.
                _ => break,
            }
        }
        self.scan(&user).await
    }

    /// The newest version at or after `head`, if that one exists. Versions are contiguous
    /// above the oldest one kept, so: double the step until a version is missing, then halve
    /// back to the last one there. A cart whose head lags far behind (its actor was killed,
    /// never tidied) costs a few look-ups, not one per version.
    async fn search_from(&self, user: &str, head: i64) -> Result<Option<Version>, StoreError> {
        let Some(mut newest) = self.version(user, head.max(1)).await? else {
            return Ok(None);
        };
        let mut step = 1;
        let missing = loop {
            match self.version(user, newest.version + step).await? {
                Some(found) => {
                    newest = found;
                    step = step.saturating_mul(2);
                }
                None => break newest.version + step,
            }
        };
        let mut missing = missing;
        while missing - newest.version > 1 {
            let middle = newest.version + (missing - newest.version) / 2;
            match self.version(user, middle).await? {
                Some(found) => newest = found,
                None => missing = middle,
            }
        }
        Ok(Some(newest))
    }

    /// The cart, if a version newer than `version` is stored (another replica wrote it). With
    /// `may_be_tidied`, also when the head has moved past `version`: versions right after it may
    /// have been tidied away.
    pub async fn newer_than(
        &self,
        user_id: Uuid,
        version: i64,
        may_be_tidied: bool,
    ) -> Result<Option<Cart>, StoreError> {
        let user = user_id.to_string();
        let moved = may_be_tidied && self.head(&user).await? > version;
        if moved || self.version(&user, version + 1).await?.is_some() {
            return self.load(user_id).await;
        }
        Ok(None)
    }

    async fn scan(&self, user: &str) -> Result<Option<Cart>, StoreError> {
        let newest = self
            .versions
            .find_one(doc! { "user": user })
            .sort(doc! { "version": -1 });
        Ok(in_time(newest.into_future()).await?.map(Cart::from))
    }

    /// The users whose stored carts (any version still kept) hold a line of `product_id`: each
    /// cart's actor decides on its newest version.
    pub async fn users_holding(&self, product_id: Uuid) -> Result<Vec<Uuid>, StoreError> {
        use futures::TryStreamExt;
        let versions = self.versions.clone_with_type::<bson::Document>();
        let found = versions
            .find(doc! { "items.product_id": product_id.to_string() })
            .projection(doc! { "user": 1 });
        let documents: Vec<bson::Document> = in_time(async {
            let cursor = found.await?;
            cursor.try_collect().await
        })
        .await?;
        let mut users: Vec<Uuid> = documents
            .iter()
            .filter_map(|document| document.get_str("user").ok()?.parse().ok())
            .collect();
        users.sort_unstable();
        users.dedup();
        Ok(users)
    }

    /// Stores `cart` as version `expected + 1`, unless someone else stored that version first.
    ///
    /// With `check_head`, a writer that may be far behind also makes sure the version did not go
    /// into a gap a tidy left (its `_id` free again, but below the head, where no reader looks):
    /// such a write is taken back and is a conflict too. The caller may skip the check while a
    /// tidy cannot have happened since it last knew it had the newest version.
    pub async fn write(
        &self,
        cart: &Cart,
        expected: i64,
        check_head: bool,
    ) -> Result<(), StoreError> {
        let version = expected + 1;
        let stored = Version::from_cart(cart, version);
        let (user, key) = (stored.user.clone(), stored.key.clone());
        self.inserts.insert(stored).await?;
        if check_head && self.head(&user).await? > version {
            let orphan = self.versions.delete_one(doc! { "_id": &key });
            in_time(orphan.into_future()).await?;
            return Err(StoreError::Conflict);
        }
        Ok(())
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

const DUPLICATE_KEY: i32 = 11000;
const NAMESPACE_NOT_FOUND: i32 = 26;

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
