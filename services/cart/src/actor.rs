//! One user's cart as an actor: the only writer of that cart's document.
//!
//! A change is applied in memory and answered only once a write carrying it is durable. While one
//! write is in flight, further changes queue up, already applied in memory, and go out together in
//! the next write (group commit): one hot cart costs one store write per batch, not per request.
//! If another process wrote the cart in between (the version guard refuses the write), the actor
//! reloads the stored cart and re-applies every change it has not answered yet, then writes again.

use std::time::{Duration, Instant};

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use uuid::Uuid;

use crate::cart::{Cart, Change};
use crate::error::CartError;
use crate::store::{CartStore, StoreError};

pub type Reply = RpcReplyPort<Result<Cart, CartError>>;

#[derive(Default)]
pub struct CartActor;

pub struct CartArgs {
    pub user_id: Uuid,
    pub store: CartStore,
    /// How long a cart actor stays without requests before it passivates (and tidies).
    pub idle_timeout: Duration,
    /// Fault injection (test hook, 0 otherwise): this percentage of changes panic the cart.
    pub panic_percent: u8,
}

pub enum CartMsg {
    /// The cart as stored (version 0: there is none yet).
    Read(Reply),
    Change(Change, Reply),
    /// The write under way finished.
    Written(Written),
    /// The registry saw no request for a while: stop, unless a write is pending.
    Passivate(shop_actors::entities::Idle),
    /// A test hook: panic, to show that a failing cart is restarted from its stored state.
    Crash,
}

pub enum Written {
    Durable,
    Conflict,
    Failed(String),
}

pub struct CartState {
    user_id: Uuid,
    store: CartStore,
    /// The cart as stored.
    durable: Cart,
    /// `durable` with every change not yet stored applied.
    working: Cart,
    /// Changes carried by the write under way, answered when it is durable.
    in_flight: Vec<(Change, Reply)>,
    /// Changes applied in memory that go out with the next write.
    queued: Vec<(Change, Reply)>,
    /// The document being written.
    writing: Option<Cart>,
    /// The oldest stored version this actor knows of: older ones are tidied away on passivation.
    oldest: i64,
    /// When this actor last knew `durable` was the newest version stored.
    confirmed_at: Instant,
    /// When the write under way was sent.
    write_started: Instant,
    idle_timeout: Duration,
    panic_percent: u8,
}

impl CartState {
    /// Whether a tidy (which only follows an actor's idle time) cannot have happened since this
    /// actor last knew it had the newest version: then no other replica's version can hide
    /// behind a moved head, and the checks for one are skipped.
    fn surely_newest(&self) -> bool {
        self.confirmed_at.elapsed() < self.idle_timeout / 2
    }
}

impl Actor for CartActor {
    type Msg = CartMsg;
    type State = CartState;
    type Arguments = CartArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<CartMsg>,
        args: CartArgs,
    ) -> Result<CartState, ActorProcessingErr> {
        let empty = Cart::empty(args.user_id);
        Ok(CartState {
            user_id: args.user_id,
            store: args.store,
            working: empty.clone(),
            durable: empty,
            in_flight: Vec::new(),
            queued: Vec::new(),
            writing: None,
            oldest: 0,
            confirmed_at: Instant::now(),
            write_started: Instant::now(),
            idle_timeout: args.idle_timeout,
            panic_percent: args.panic_percent,
        })
    }

    /// Loads the stored cart before the first message. Not in `pre_start`: the registry waits for
    /// `pre_start`, and must not wait for the store while other users' carts start.
    async fn post_start(
        &self,
        _myself: ActorRef<CartMsg>,
        state: &mut CartState,
    ) -> Result<(), ActorProcessingErr> {
        // Boxed: an actor's task is sized for its largest await, and a store call is large;
        // boxing keeps the memory of a hundred thousand idle carts down.
        state.confirmed_at = Instant::now();
        if let Some(stored) = Box::pin(state.store.load(state.user_id)).await? {
            state.oldest = stored.version;
            state.working = stored.clone();
            state.durable = stored;
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<CartMsg>,
        message: CartMsg,
        state: &mut CartState,
    ) -> Result<(), ActorProcessingErr> {
        let _handling = shop_actors::meta::Handling::start(myself.get_cell());
        match message {
            CartMsg::Read(reply) => {
                if state.writing.is_none() && state.queued.is_empty() {
                    // Another replica may have written the cart (its customer was routed there
                    // while this one was away): answer what is stored, not what this one knew.
                    Box::pin(refresh(state)).await;
                }
                let _ = reply.send(Ok(state.durable.clone()));
            }
            CartMsg::Change(change, reply) => {
                if state.panic_percent > 0 && rand::random_range(0..100) < state.panic_percent {
                    panic!("cart {} panicked by fault injection", state.user_id);
                }
                let snapshot = |cart: &Cart| {
                    (
                        cart.items.clone(),
                        cart.currency.clone(),
                        cart.ordered.last().cloned(),
                    )
                };
                let before = snapshot(&state.working);
                if let Err(error) = state.working.apply(&change) {
                    let _ = reply.send(Err(error));
                    return Ok(());
                }
                let unchanged = before == snapshot(&state.working);
                let needs_creating = matches!(change, Change::Create) && !state.working.exists();
                if unchanged
                    && !needs_creating
                    && state.writing.is_none()
                    && state.queued.is_empty()
                {
                    // Nothing to store: what is stored already says it.
                    let _ = reply.send(Ok(state.durable.clone()));
                    return Ok(());
                }
                state.queued.push((change, reply));
                if state.writing.is_none() {
                    start_write(&myself, state);
                }
            }
            CartMsg::Written(outcome) => Box::pin(finish_write(&myself, state, outcome)).await,
            CartMsg::Passivate(idle) => {
                if idle.still() && state.writing.is_none() && state.queued.is_empty() {
                    if state.durable.version > state.oldest.max(1) {
                        let (store, user) = (state.store.clone(), state.user_id);
                        let (newest, oldest) = (state.durable.version, state.oldest);
                        tokio::spawn(async move { store.tidy(user, newest, oldest).await });
                    }
                    myself.stop(Some("idle".to_owned()));
                }
            }
            CartMsg::Crash => panic!("cart {} crashed on request (test hook)", state.user_id),
        }
        Ok(())
    }
}

/// Sends the working cart to the store, carrying every queued change.
fn start_write(myself: &ActorRef<CartMsg>, state: &mut CartState) {
    let expected = state.durable.version;
    let mut document = state.working.clone();
    document.version = expected + 1;
    document.updated_at = bson::DateTime::now();
    state.in_flight = std::mem::take(&mut state.queued);
    crate::metrics::CHANGES_PER_WRITE.observe(state.in_flight.len() as f64);
    state.writing = Some(document.clone());
    state.write_started = Instant::now();
    let check_head = !state.surely_newest();
    let store = state.store.clone();
    let myself = myself.clone();
    tokio::spawn(async move {
        let outcome = match store.write(&document, expected, check_head).await {
            Ok(()) => Written::Durable,
            Err(StoreError::Conflict) => Written::Conflict,
            Err(error) => Written::Failed(error.to_string()),
        };
        // The actor may be gone (killed); then nobody waits for this answer.
        let _ = myself.send_message(CartMsg::Written(outcome));
    });
}

async fn finish_write(myself: &ActorRef<CartMsg>, state: &mut CartState, outcome: Written) {
    let in_flight = std::mem::take(&mut state.in_flight);
    let written = state.writing.take();
    match (outcome, written) {
        (Written::Durable, Some(written)) => {
            state.confirmed_at = state.write_started;
            state.durable = written;
            state.working.version = state.durable.version;
            for (_, reply) in in_flight {
                let _ = reply.send(Ok(state.durable.clone()));
            }
        }
        (Written::Conflict, _) => {
            crate::metrics::VERSION_CONFLICTS.inc();
            tracing::info!(user_id = %state.user_id, "cart written elsewhere; reloading and re-applying");
            let loading = Instant::now();
            match state.store.load(state.user_id).await {
                Ok(stored) => {
                    state.confirmed_at = loading;
                    state.durable = stored.unwrap_or_else(|| Cart::empty(state.user_id));
                    let pending = in_flight
                        .into_iter()
                        .chain(std::mem::take(&mut state.queued));
                    reapply(state, pending);
                }
                Err(error) => fail(state, in_flight, &error.to_string()),
            }
        }
        (Written::Failed(error), _) => fail(state, in_flight, &error),
        (Written::Durable, None) => fail(state, in_flight, "no write was under way"),
    }
    if state.writing.is_none() && !state.queued.is_empty() {
        start_write(myself, state);
    }
}

/// Takes a newer stored version, if another replica wrote one.
async fn refresh(state: &mut CartState) {
    let looking = Instant::now();
    let (version, may_be_tidied) = (state.durable.version, !state.surely_newest());
    match state
        .store
        .newer_than(state.user_id, version, may_be_tidied)
        .await
    {
        Ok(Some(newer)) => {
            tracing::info!(user_id = %state.user_id, version = newer.version, "the cart was written elsewhere; reloaded");
            state.working = newer.clone();
            state.durable = newer;
            state.confirmed_at = looking;
        }
        Ok(None) if may_be_tidied => state.confirmed_at = looking,
        Ok(None) => {}
        // What this actor has is still a version that was stored; the next write checks it.
        Err(error) => {
            tracing::warn!(user_id = %state.user_id, %error, "looking for a newer cart failed")
        }
    }
}

/// The write failed: its changes are answered 503 and dropped; the queued ones are re-applied
/// to what is stored.
fn fail(state: &mut CartState, in_flight: Vec<(Change, Reply)>, error: &str) {
    tracing::warn!(user_id = %state.user_id, %error, "cart write failed");
    for (_, reply) in in_flight {
        let _ = reply.send(Err(CartError::StoreUnavailable));
    }
    let queued = std::mem::take(&mut state.queued);
    reapply(state, queued);
}

/// Rebuilds the working cart from the durable one and `pending` changes; a change that no longer
/// applies (another process filled the cart meanwhile, say) is answered with why.
fn reapply(state: &mut CartState, pending: impl IntoIterator<Item = (Change, Reply)>) {
    state.working = state.durable.clone();
    for (change, reply) in pending {
        match state.working.apply(&change) {
            Ok(()) => state.queued.push((change, reply)),
            Err(error) => {
                let _ = reply.send(Err(error));
            }
        }
    }
}
