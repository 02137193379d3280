//! Carts in the MongoDB-compatible store: one document per user, written whole, guarded by its
//! version. Only `replace_one` with an `{_id, version}` filter and `insert_one` are used: forms
//! every MongoDB-compatible store agrees on (no positional `$`, no `arrayFilters`).

use std::time::Duration;

use bson::doc;
use mongodb::options::{ClientOptions, WriteConcern};
use mongodb::{Client, Collection};
use uuid::Uuid;

use crate::cart::Cart;

pub const DATABASE: &str = "shop_cart";
const COLLECTION: &str = "carts";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Someone else wrote the cart since it was read: reload and re-apply.
    #[error("the cart was written by someone else (version race)")]
    Conflict,
    #[error("the cart store: {0}")]
    Unavailable(#[from] mongodb::error::Error),
}

#[derive(Clone)]
pub struct CartStore {
    carts: Collection<Cart>,
}

impl CartStore {
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let mut options = ClientOptions::parse(url).await?;
        options.app_name = Some("shop-cart".to_owned());
        options.server_selection_timeout = Some(Duration::from_secs(5));
        options.connect_timeout = Some(Duration::from_secs(5));
        // Acknowledged only once journaled on a majority: "durable" means durable.
        let mut durable = WriteConcern::majority();
        durable.journal = Some(true);
        options.write_concern = Some(durable);
        let client = Client::with_options(options)?;
        Ok(Self {
            carts: client.database(DATABASE).collection(COLLECTION),
        })
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.carts
            .client()
            .database(DATABASE)
            .run_command(doc! { "ping": 1 })
            .await?;
        Ok(())
    }

    pub async fn load(&self, user_id: Uuid) -> Result<Option<Cart>, StoreError> {
        Ok(self
            .carts
            .find_one(doc! { "_id": user_id.to_string() })
            .await?)
    }

    /// Writes `cart` (whose version is `expected + 1`) if the stored version is still
    /// `expected` (0: not stored yet).
    pub async fn write(&self, cart: &Cart, expected: i64) -> Result<(), StoreError> {
        if expected == 0 {
            return match self.carts.insert_one(cart).await {
                Ok(_) => Ok(()),
                Err(error) if is_duplicate_key(&error) => Err(StoreError::Conflict),
                Err(error) => Err(error.into()),
            };
        }
        let replaced = self
            .carts
            .replace_one(doc! { "_id": &cart.user_id, "version": expected }, cart)
            .await?;
        if replaced.matched_count == 0 {
            return Err(StoreError::Conflict);
        }
        Ok(())
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
