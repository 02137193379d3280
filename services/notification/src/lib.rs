//! The notification service: templated email and SMS on every order event, with a delivery log.
//!
//! ```text
//! notification                  supervisor, one-for-one, at most 5 restarts in 30 s
//! ├── notification.http         poem server: /notifications/*, /health, /ready, /metrics   permanent
//! ├── notification.events       records what each event sends (once), hands it on          permanent
//! ├── notification.registry     starts message actors on demand                            permanent
//! │   └── message:<id> × N        one per message in flight: sends it, retries on its own
//! │                               timer (at most 3 restarts in 10 s)                       transient
//! ├── notification.sweeper      wakes due messages no actor holds                          permanent
//! └── notification.bridge       Kafka: hears shop.users (the address book follows accounts;
//!                               account mails), shop.orders, shop.payments                permanent
//! ```
//!
//! PostgreSQL database `shop_notification`: the address book learned from events, opt-outs,
//! the delivery log. Email goes by SMTP (Mailpit under dev/up) or SendGrid, SMS by Twilio or
//! into the log.

pub mod channels;
pub mod deliveries;
mod error;
mod http;
pub mod plan;
pub mod store;
pub mod templates;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use shop_actors::entities::{self, EntityKind};
use shop_actors::sweeper::Sweeper;
use shop_actors::{Child, Intensity, Restart, Service, SupervisorSpec};
use shop_bridge::{Subscriber, Subscriptions};
use shop_config::{EmailProvider, Secret, Settings, SmsProvider};
use shop_schemas::{
    AccountMailRequested, OrderCancelled, OrderDelivered, OrderPaid, OrderPlaced, OrderShipped,
    PaymentFailed, PaymentRefunded, UserDeleted, UserRegistered, UserUpdated,
};
use shop_web::server::Shutdown;
use shop_web::{ServiceWeb, TokenVerifier, postgres};
use sqlx::PgPool;

use channels::{EmailSender, SendGrid, SmsSender, Twilio};
pub use deliveries::Senders;

pub const SERVICE: &str = "notification";
pub const DATABASE: &str = "shop_notification";
const ROOT: &str = "notification";
const HTTP: &str = "notification.http";
const EVENTS: &str = "notification.events";
const REGISTRY: &str = "notification.registry";
const SWEEPER: &str = "notification.sweeper";
const BRIDGE: &str = "notification.bridge";

/// How often the sweeper looks for due messages.
const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Database(#[from] postgres::DatabaseError),
    #[error("setting up a channel: {0}")]
    Channel(#[from] channels::SetupError),
    #[error("starting the supervision tree: {0}")]
    Spawn(#[from] ractor::SpawnErr),
}

/// Creates and migrates `shop_notification`.
pub async fn migrate(settings: &Settings) -> Result<PgPool, StartError> {
    Ok(postgres::connect(
        &settings.postgres,
        DATABASE,
        &[&store::MIGRATOR, &shop_bridge::migrator()],
    )
    .await?)
}

/// The channels the settings choose.
pub fn senders(settings: &Settings) -> Result<Senders, StartError> {
    let n = &settings.notification;
    let secret = |secret: &Option<Secret>| {
        secret
            .as_ref()
            .map(Secret::expose)
            .unwrap_or_default()
            .to_owned()
    };
    let email = match n.email {
        EmailProvider::Smtp => EmailSender::smtp(n.smtp_url.as_str(), &n.email_from)?,
        EmailProvider::Sendgrid => EmailSender::SendGrid(SendGrid::new(
            n.sendgrid_api_base.as_str(),
            &secret(&n.sendgrid_api_key),
            &n.email_from,
        )?),
    };
    let sms = match n.sms {
        SmsProvider::Log => SmsSender::Log {
            masked: settings.notification.sms_log == shop_config::SmsLog::Masked,
        },
        SmsProvider::Twilio => SmsSender::Twilio(Twilio::new(
            n.twilio_api_base.as_str(),
            n.twilio_account_sid.as_deref().unwrap_or_default(),
            &secret(&n.twilio_auth_token),
            n.twilio_from.as_deref().unwrap_or_default(),
        )?),
    };
    Ok(Senders { email, sms })
}

/// Starts the notification service's supervision tree.
pub async fn start(settings: &Settings, shutdown: Shutdown) -> Result<Service, StartError> {
    let pool = migrate(settings).await?;
    let senders = Arc::new(senders(settings)?);
    let templates = Arc::new(
        templates::Templates::new(settings.notification.templates_dir.as_deref())
            .with_shop_url(settings.notification.public_url.as_str()),
    );
    let messages = deliveries::Messages::new(
        deliveries::MessageKind::KIND,
        REGISTRY,
        settings.http.actor_timeout,
    );

    let web = ServiceWeb {
        service: SERVICE,
        title: "Shop notification service",
        root_actor: ROOT.to_owned(),
        verifier: Arc::new(TokenVerifier::for_service(&settings.auth)),
        readiness: postgres::readiness(pool.clone()),
        body_limit: settings.http.body_limit,
        instance: settings.instance.clone(),
        trace_store: settings.tracing.query_url.clone(),
    };
    let (api_pool, api_messages) = (pool.clone(), messages.clone());
    let routes: shop_web::RouteFactory = Arc::new(move || {
        web.endpoint(
            http::NotificationsApi {
                pool: api_pool.clone(),
                messages: api_messages.clone(),
            },
            "/notifications",
        )
    });
    let addr = SocketAddr::new(settings.http.bind_host, settings.notification.port);

    let to_handler = Subscriber::deliveries(EVENTS);
    let subscriptions = Subscriptions::new()
        .on::<UserRegistered>(to_handler.clone())
        .on::<UserUpdated>(to_handler.clone())
        .on::<UserDeleted>(to_handler.clone())
        .on::<AccountMailRequested>(to_handler.clone())
        .on::<OrderPlaced>(to_handler.clone())
        .on::<OrderPaid>(to_handler.clone())
        .on::<OrderShipped>(to_handler.clone())
        .on::<OrderDelivered>(to_handler.clone())
        .on::<OrderCancelled>(to_handler.clone())
        .on::<PaymentFailed>(to_handler.clone())
        .on::<PaymentRefunded>(to_handler)
        // Mail is not on the checkout's path: fewer, fuller fetches.
        .gathering(shop_bridge::GATHER);

    let kind = deliveries::MessageKind {
        pool: pool.clone(),
        senders,
        max_attempts: settings.notification.max_attempts.max(1),
    };
    let (handler_pool, handler_messages) = (pool.clone(), messages.clone());
    let tree = SupervisorSpec::new(ROOT)
        .intensity(Intensity::default())
        .child(shop_web::server::child(
            HTTP,
            SERVICE,
            addr,
            routes,
            shutdown,
            settings.http.shutdown_grace,
        ))
        .child(Child::actor(
            EVENTS,
            "router",
            Restart::Permanent,
            move || {
                let state = deliveries::HandlerState {
                    pool: handler_pool.clone(),
                    templates: templates.clone(),
                    messages: handler_messages.clone(),
                };
                (deliveries::EventHandler, state)
            },
        ))
        .child(entities::registry_child(
            REGISTRY,
            kind,
            messages.clone(),
            entities::Idleness::passivate_after(settings.notification.idle_timeout),
        ))
        .child(Child::actor(
            SWEEPER,
            "timer",
            Restart::Permanent,
            move || {
                let args = deliveries::sweeper(pool.clone(), messages.clone(), SWEEP_INTERVAL);
                (Sweeper::default(), args)
            },
        ))
        .child(shop_bridge::bridge_child(
            BRIDGE,
            SERVICE,
            &settings.kafka,
            subscriptions,
        ));
    Ok(shop_actors::service::start(tree).await?)
}
