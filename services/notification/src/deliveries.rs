//! Sending: the event handler (records what each event sends and hands it on), one actor per
//! message in flight (sends it, retries transient failures on its own timer with exponential
//! backoff, gives up after `SHOP_NOTIFICATION_MAX_ATTEMPTS`), kept by a registry from
//! `shop_actors::entities`, and what the sweeper looks for.

use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use chrono::Utc;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use shop_actors::entities::{self, EntityKind};
use shop_actors::sweeper::{Due, SweeperArgs};
use shop_bridge::{Ack, Delivery};
use sqlx::PgPool;
use uuid::Uuid;

use crate::channels::{EmailSender, SendError, SmsSender};
use crate::store;
use crate::templates::{Email, Templates};

pub type Messages = entities::Entities<MessageMsg>;

/// How messages leave, shared by every message actor.
pub struct Senders {
    pub email: EmailSender,
    pub sms: SmsSender,
}

/// Records what each event sends, answers the bridge, then wakes the new messages' actors.
pub struct EventHandler;

pub struct HandlerState {
    pub pool: PgPool,
    pub templates: Arc<Templates>,
    pub messages: Messages,
}

impl Actor for EventHandler {
    type Msg = Delivery;
    type State = HandlerState;
    type Arguments = HandlerState;

    async fn pre_start(
        &self,
        _: ActorRef<Delivery>,
        state: HandlerState,
    ) -> Result<HandlerState, ActorProcessingErr> {
        Ok(state)
    }

    async fn handle(
        &self,
        myself: ActorRef<Delivery>,
        delivery: Delivery,
        state: &mut HandlerState,
    ) -> Result<(), ActorProcessingErr> {
        let span = delivery.span(myself.get_cell());
        self.handle_traced(myself, delivery, state)
            .instrument(span)
            .await
    }
}

impl EventHandler {
    /// What `handle` does, inside the span of this message.
    async fn handle_traced(
        &self,
        myself: ActorRef<Delivery>,
        delivery: Delivery,
        state: &mut HandlerState,
    ) -> Result<(), ActorProcessingErr> {
        let _handling = shop_actors::meta::Handling::start(myself.get_cell());
        match crate::plan::plan(&state.pool, &state.templates, &delivery.event).await {
            Ok(recorded) => {
                let _ = delivery.reply.send(Ack::Done);
                for message in recorded {
                    let id = message.id;
                    // Not reachable now: the sweeper sends it.
                    let claimed = MessageMsg::SendClaimed(
                        Box::new(message),
                        shop_telemetry::current_traceparent(),
                    );
                    if let Err(error) = state.messages.send(id, claimed).await {
                        tracing::warn!(%id, %error, "a message's actor could not be reached");
                    }
                }
            }
            Err(error) => {
                let store_down = shop_web::postgres::unavailable(&error);
                let _ = delivery.reply.send(Ack::retry(
                    store_down,
                    format!("recording the messages: {error}"),
                ));
            }
        }
        Ok(())
    }
}

#[derive(Clone)]
pub struct MessageKind {
    pub pool: PgPool,
    pub senders: Arc<Senders>,
    pub max_attempts: u32,
}

impl EntityKind for MessageKind {
    type Actor = MessageActor;
    type Msg = MessageMsg;
    type Args = MessageArgs;
    type Dormant = ();
    const KIND: &'static str = "message";

    fn args(&self, id: Uuid, _: Option<()>) -> MessageArgs {
        MessageArgs {
            id,
            pool: self.pool.clone(),
            senders: self.senders.clone(),
            max_attempts: self.max_attempts,
        }
    }

    fn passivate(idle: entities::Idle) -> MessageMsg {
        MessageMsg::Passivate(idle)
    }
}

#[derive(Default)]
pub struct MessageActor;

pub struct MessageArgs {
    pub id: Uuid,
    pub pool: PgPool,
    pub senders: Arc<Senders>,
    pub max_attempts: u32,
}

impl MessageMsg {
    /// A message sent just after its event was planned is in that event's trace; a sweep's or
    /// a retry timer's has none.
    fn span(&self, actor: &ActorRef<MessageMsg>) -> tracing::Span {
        match self {
            MessageMsg::SendClaimed(delivery, trace) => shop_actors::meta::handling_span(
                actor.get_cell(),
                &format!("send {}", delivery.template),
                trace.as_deref(),
            ),
            _ => tracing::Span::none(),
        }
    }
}

pub enum MessageMsg {
    /// Send it if it is due and this replica can claim it.
    Work,
    /// Send it: recorded (and so claimed) by this replica just now, as recorded; in the trace
    /// of the event it answers.
    SendClaimed(Box<store::Delivery>, Option<String>),
    /// The registry saw no message for a while.
    Passivate(entities::Idle),
}

/// The wait after try `attempts`: 1 s doubling, at most 60 s.
fn backoff(attempts: i32) -> Duration {
    let doublings = u32::try_from(attempts.clamp(1, 7) - 1).unwrap_or(0);
    (Duration::from_secs(1) * 2u32.pow(doublings)).min(Duration::from_secs(60))
}

impl Actor for MessageActor {
    type Msg = MessageMsg;
    type State = MessageArgs;
    type Arguments = MessageArgs;

    async fn pre_start(
        &self,
        _: ActorRef<MessageMsg>,
        args: MessageArgs,
    ) -> Result<MessageArgs, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        myself: ActorRef<MessageMsg>,
        message: MessageMsg,
        state: &mut MessageArgs,
    ) -> Result<(), ActorProcessingErr> {
        let span = message.span(&myself);
        self.handle_traced(myself, message, state)
            .instrument(span)
            .await
    }
}

impl MessageActor {
    /// What `handle` does, inside the span of this message.
    async fn handle_traced(
        &self,
        myself: ActorRef<MessageMsg>,
        message: MessageMsg,
        state: &mut MessageArgs,
    ) -> Result<(), ActorProcessingErr> {
        let _handling = shop_actors::meta::Handling::start(myself.get_cell());
        if let MessageMsg::Passivate(idle) = message {
            if idle.leave(None) {
                myself.stop(None);
            }
            return Ok(());
        }
        let (claimed, delivery) = match message {
            MessageMsg::SendClaimed(recorded, _) => (true, Some(*recorded)),
            _ => (false, store::delivery(&state.pool, state.id).await?),
        };
        // Done with this message (no longer pending, sent, or failed for good): ended by
        // draining, so a message queued meanwhile (a resend asked for) is still handled.
        let Some(delivery) = delivery else {
            shop_actors::entities::finish(&myself);
            return Ok(());
        };
        if !delivery.is_pending() {
            shop_actors::entities::finish(&myself);
            return Ok(());
        }
        // A sweep or a retry timer: only one replica may send, the one whose claim took.
        if !claimed && !store::claim(&state.pool, delivery.id).await? {
            return Ok(());
        }
        // A span of the trace the message was sent in; none outside one (a sweep's retry).
        let sending = if shop_telemetry::in_recorded_trace() {
            tracing::info_span!(
                target: shop_telemetry::SPANS_ONLY,
                "send",
                otel.name = format!("send {}", delivery.channel),
                otel.kind = "client",
                otel.status_code = tracing::field::Empty,
                notification.channel = %delivery.channel,
                notification.template = %delivery.template,
            )
        } else {
            tracing::Span::none()
        };
        let sent = send(&state.senders, &delivery)
            .instrument(sending.clone())
            .await;
        if sent.is_err() {
            sending.record("otel.status_code", "ERROR");
        }
        drop(sending);
        match sent {
            Ok(message_id) => {
                store::mark_sent(&state.pool, delivery.id, &message_id).await?;
                tracing::info!(id = %delivery.id, channel = %delivery.channel, template = %delivery.template, "sent");
                shop_actors::entities::finish(&myself);
            }
            Err(SendError::Transient(error))
                if u32::try_from(delivery.attempts + 1).unwrap_or(u32::MAX)
                    < state.max_attempts =>
            {
                let wait = backoff(delivery.attempts + 1);
                let at = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
                tracing::warn!(id = %delivery.id, %error, ?wait, "sending failed; trying again");
                store::mark_failed_try(&state.pool, delivery.id, &error, Some(at)).await?;
                myself.send_after(wait, || MessageMsg::Work);
            }
            Err(error) => {
                tracing::warn!(id = %delivery.id, %error, "sending failed for good");
                store::mark_failed_try(&state.pool, delivery.id, &error.to_string(), None).await?;
                shop_actors::entities::finish(&myself);
            }
        }
        Ok(())
    }
}

async fn send(senders: &Senders, delivery: &store::Delivery) -> Result<String, SendError> {
    let text = delivery.body_text.clone().unwrap_or_default();
    match delivery.channel.as_str() {
        "sms" => senders.sms.send(&delivery.recipient, &text).await,
        _ => {
            let email = Email {
                subject: delivery.subject.clone().unwrap_or_default(),
                text,
                html: delivery.body_html.clone().unwrap_or_default(),
            };
            // The address book's name is not kept per delivery: the address is enough.
            senders.email.send("", &delivery.recipient, &email).await
        }
    }
}

/// Messages looked at per sweep.
const BATCH: i64 = 500;

/// The sweeper's work: messages due that no actor holds (after a restart, or a send missed).
pub fn sweeper(pool: PgPool, messages: Messages, interval: Duration) -> SweeperArgs<MessageMsg> {
    let due: Due = Arc::new(move |_first| {
        let pool = pool.clone();
        Box::pin(async move {
            store::due(&pool, BATCH)
                .await
                .map_err(|error| error.to_string())
        })
    });
    SweeperArgs {
        what: "messages",
        due,
        entities: messages,
        wake: || MessageMsg::Work,
        interval,
    }
}
