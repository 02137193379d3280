//! The carts: one actor per user, kept by a registry from `shop_actors::entities` (started on
//! demand, restarted from the store when one fails — at most 3 times in 10 s — hibernated when
//! idle, forgotten when idle for longer). Handlers reach a running cart without going through
//! the registry's mailbox.

use shop_actors::entities::{self, EntityKind};
use uuid::Uuid;

use crate::actor::{self, CartActor, CartArgs, CartMsg, Hibernated, Reply};
use crate::cart::Cart;
use crate::error::CartError;
use crate::metrics;
use crate::store::CartStore;

#[derive(Clone)]
pub struct CartKind {
    pub store: CartStore,
    /// How long a cart stays without requests before it is forgotten (hibernated or not).
    pub idle_timeout: std::time::Duration,
    /// Fault injection (test hook): this percentage of changes panic the cart.
    pub panic_percent: u8,
}

impl EntityKind for CartKind {
    type Actor = CartActor;
    type Msg = CartMsg;
    type Args = CartArgs;
    type Dormant = Hibernated;
    const KIND: &'static str = "cart";

    fn args(&self, user_id: Uuid, woken: Option<Hibernated>) -> CartArgs {
        CartArgs {
            user_id,
            store: self.store.clone(),
            idle_timeout: self.idle_timeout,
            panic_percent: self.panic_percent,
            woken,
        }
    }

    fn passivate(idle: entities::Idle<Hibernated>) -> CartMsg {
        CartMsg::Passivate(idle)
    }

    fn started(&self, _: Uuid, _: usize) {
        metrics::CART_ACTORS.inc();
    }

    fn stopped(&self, _: Uuid, failed: bool) {
        metrics::CART_ACTORS.dec();
        if failed {
            metrics::CART_RESTARTS.inc();
        }
    }

    fn retire(&self, user_id: Uuid, record: Hibernated) {
        if let Some((newest, oldest)) = record.versions(user_id) {
            actor::tidy(&self.store, user_id, newest, oldest);
        }
    }

    fn counted(&self, _awake: usize, hibernated: usize) {
        metrics::CARTS_HIBERNATED.set(i64::try_from(hibernated).unwrap_or(i64::MAX));
    }
}

/// How handlers and event subscribers reach carts.
#[derive(Clone)]
pub struct Carts(entities::Entities<CartMsg, Hibernated>);

impl Carts {
    pub fn new(registry: &str, timeout: std::time::Duration) -> Self {
        Self(entities::Entities::new(CartKind::KIND, registry, timeout))
    }

    pub fn entities(&self) -> &entities::Entities<CartMsg, Hibernated> {
        &self.0
    }

    /// Sends `message` to the user's cart, starting it if needed, and waits for the answer.
    pub async fn call(
        &self,
        user_id: Uuid,
        message: impl FnOnce(Reply) -> CartMsg,
    ) -> Result<Cart, CartError> {
        self.0
            .call(user_id, message)
            .await
            .map_err(|_| CartError::Busy)?
    }

    /// Tells the user's cart to crash, if it runs (a test hook).
    pub fn crash(&self, user_id: Uuid) -> bool {
        self.0.send_if_running(user_id, CartMsg::Crash)
    }
}
