//! One user's cart as an actor: the only writer of that cart's document.
//!
//! A change is applied in memory and answered only once a write carrying it is durable. While one
//! write is in flight, further changes queue up, already applied in memory, and go out together in
//! the next write (group commit): one hot cart costs one store write per batch, not per request.
//! If another process wrote the cart in between (the version guard refuses the write), the actor
//! reloads the stored cart and re-applies every change it has not answered yet, then writes again.
//!
//! An idle cart hibernates: its actor stops and leaves a [`Hibernated`] record with the registry,
//! from which the next request wakes it without reading the store. While hibernated the cart has
//! no writer here; a version another replica stored meanwhile is found as by an awake cart (the
//! version guard on write, the newer-version check on read).

use std::time::{Duration, Instant};
use tracing::Instrument;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use uuid::Uuid;

use crate::cart::{Cart, Change, PackedCart};
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
    /// The record it hibernated with, when it is woken from one.
    pub woken: Option<Hibernated>,
}

/// What a hibernated cart leaves with the registry: the stored cart, packed, and what its actor
/// knew about the store.
pub struct Hibernated {
    /// `None`: no cart is stored.
    cart: Option<PackedCart>,
    oldest: i64,
    confirmed_at: Instant,
}

impl Hibernated {
    /// The stored version, and the oldest one still kept (for tidying).
    pub fn versions(&self, user_id: Uuid) -> Option<(i64, i64)> {
        let cart = Cart::unpack(user_id, self.cart.as_ref()?).ok()?;
        Some((cart.version, self.oldest))
    }
}

pub enum CartMsg {
    /// The cart as stored (version 0: there is none yet).
    Read(Reply),
    /// A change, and the trace of the request that asks for it.
    Change(Change, Reply, Option<String>),
    /// The write under way finished.
    Written(Written),
    /// The registry saw no request for a while: hibernate (or stop), unless a write is pending.
    Passivate(shop_actors::entities::Idle<Hibernated>),
    /// A test hook: panic, to show that a failing cart is restarted from its stored state.
    Crash,
}

impl CartMsg {
    /// A change is handled in its request's trace; reads, writes finishing and housekeeping
    /// have no span.
    fn span(&self, actor: &ActorRef<CartMsg>) -> tracing::Span {
        match self {
            CartMsg::Change(change, _, trace) => {
                shop_actors::meta::handling_span(actor.get_cell(), change.name(), trace.as_deref())
            }
            _ => tracing::Span::none(),
        }
    }
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
    /// Woken from a record: the store need not be read.
    loaded: bool,
}

impl CartState {
    /// Takes the cart from the record it hibernated with. A record that does not unpack (it
    /// always should) is ignored: the cart is then read from the store.
    fn wake(&mut self, record: Hibernated) {
        let cart = match &record.cart {
            None => Cart::empty(self.user_id),
            Some(packed) => match Cart::unpack(self.user_id, packed) {
                Ok(cart) => cart,
                Err(error) => {
                    tracing::warn!(user_id = %self.user_id, %error, "a hibernated cart did not unpack; reading the store");
                    return;
                }
            },
        };
        self.working = cart.clone();
        self.durable = cart;
        self.oldest = record.oldest;
        self.confirmed_at = record.confirmed_at;
        self.loaded = true;
        crate::metrics::CARTS_WOKEN.inc();
    }

    /// The record this cart hibernates with, when it can pack.
    fn hibernated(&self) -> Option<Hibernated> {
        let cart = if self.durable.exists() {
            Some(self.durable.pack().ok()?)
        } else {
            None
        };
        Some(Hibernated {
            cart,
            oldest: self.oldest,
            confirmed_at: self.confirmed_at,
        })
    }

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
        let mut state = CartState {
            user_id: args.user_id,
            store: args.store,
            working: Cart::empty(args.user_id),
            durable: Cart::empty(args.user_id),
            in_flight: Vec::new(),
            queued: Vec::new(),
            writing: None,
            oldest: 0,
            confirmed_at: Instant::now(),
            write_started: Instant::now(),
            idle_timeout: args.idle_timeout,
            panic_percent: args.panic_percent,
            loaded: false,
        };
        if let Some(record) = args.woken {
            state.wake(record);
        }
        Ok(state)
    }

    /// Loads the stored cart before the first message, unless it woke from its record. Not in
    /// `pre_start`: the registry waits for `pre_start`, and must not wait for the store while
    /// other users' carts start.
    async fn post_start(
        &self,
        _myself: ActorRef<CartMsg>,
        state: &mut CartState,
    ) -> Result<(), ActorProcessingErr> {
        if state.loaded {
            return Ok(());
        }
        // Boxed: an actor's task is sized for its largest await, and a store call is large;
        // boxing keeps the memory of a hundred thousand idle carts down.
        state.confirmed_at = Instant::now();
        crate::metrics::STORE_LOADS.inc();
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
        let span = message.span(&myself);
        self.handle_traced(myself, message, state)
            .instrument(span)
            .await
    }
}

impl CartActor {
    /// What `handle` does, inside the span of this message.
    async fn handle_traced(
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
            CartMsg::Change(change, reply, _) => {
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
                if state.writing.is_none() && state.queued.is_empty() {
                    let record = if idle.hibernates() {
                        state.hibernated()
                    } else {
                        None
                    };
                    let hibernating = record.is_some();
                    if idle.leave(record) {
                        // A hibernated cart is tidied when its record is forgotten.
                        if !hibernating {
                            tidy(
                                &state.store,
                                state.user_id,
                                state.durable.version,
                                state.oldest,
                            );
                        }
                        myself.stop(Some(if hibernating { "hibernated" } else { "idle" }.into()));
                    }
                }
            }
            CartMsg::Crash => panic!("cart {} crashed on request (test hook)", state.user_id),
        }
        Ok(())
    }
}

/// Moves the cart's head to its newest version and deletes the older ones, in the background.
pub fn tidy(store: &CartStore, user_id: Uuid, newest: i64, oldest: i64) {
    if newest > oldest.max(1) {
        let store = store.clone();
        tokio::spawn(async move { store.tidy(user_id, newest, oldest).await });
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
