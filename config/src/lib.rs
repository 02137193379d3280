//! Shop's settings: typed, read from `SHOP_*` environment variables, each with a default that works
//! with `dev/up`, and validated at start with an error that names every wrong variable.
//!
//! ```no_run
//! let settings = shop_config::Settings::from_env()?;
//! # Ok::<(), shop_config::ConfigError>(())
//! ```

pub mod commerce;
mod reader;

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use commerce::{ShippingMethod, ShippingRate, ShippingTable, TaxTable};
use reader::Reader;
pub use reader::{Entry, Port, Problem};
pub use url::Url;

/// The settings every process reads, whatever services it runs.
#[derive(Debug, Clone)]
pub struct Settings {
    pub environment: Environment,
    pub log_filter: String,
    pub log_format: LogFormat,
    /// Where a dev process keeps what it generates (the token signing key).
    pub data_dir: PathBuf,
    /// This process's name among the replicas of its service: answers carry it
    /// (`X-Shop-Instance`), and it is the Kafka client id.
    pub instance: String,
    pub http: HttpSettings,
    pub postgres: PostgresSettings,
    pub auth: AuthSettings,
    pub user: UserSettings,
    pub product: ProductSettings,
    pub cart: CartSettings,
    pub order: OrderSettings,
    pub payment: PaymentSettings,
    pub notification: NotificationSettings,
    pub kafka: KafkaSettings,
    pub tracing: TraceSettings,
    entries: Vec<Entry>,
}

/// Distributed tracing: where spans go, how many traces are kept, where they are read back.
#[derive(Debug, Clone)]
pub struct TraceSettings {
    /// The trace store's OTLP/HTTP traces URL; unset, tracing is off (no exporter at all).
    pub endpoint: Option<Url>,
    pub sample_ratio: SampleRatio,
    /// The trace store's query API (Jaeger's), read by `/admin/traces`.
    pub query_url: Option<Url>,
}

/// The fraction of traces begun here that are kept (a trace continued from a caller follows
/// the caller's decision).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleRatio(pub f64);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    /// `dev/up`, `dev/test` and the local compose demo: built-in secrets, a generated signing
    /// key, the simulated payment provider. Only ever chosen explicitly.
    Dev,
    /// Production's rules, except that the simulated payment provider is allowed (and said
    /// so at start).
    Staging,
    /// What a process runs as unless told otherwise.
    Production,
}

/// The built-in development values of secrets: refused outside `dev`, whoever sets them.
pub mod dev_values {
    pub const SERVICE_SECRET: &str = "dev-service-secret";
    pub const WEBHOOK_SECRET: &str = "whsec_dev_only_secret";
    /// The password of the `shop` role dev/ creates.
    pub const DATABASE_PASSWORD: &str = "shop";
    /// dev/up's bootstrap admin.
    pub const ADMIN_PASSWORD: &str = "admin-dev-password";
}

/// The shortest bootstrap admin password production takes.
pub const MIN_ADMIN_PASSWORD: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub bind_host: IpAddr,
    /// Largest request body a service reads.
    pub body_limit: usize,
    /// How long a handler waits for an actor's answer.
    pub actor_timeout: Duration,
    /// How long in-flight requests may take to finish on shutdown.
    pub shutdown_grace: Duration,
}

#[derive(Clone)]
pub struct PostgresSettings {
    /// The server; each service uses its own database on it (`shop_user`, …).
    pub url: Url,
    pub pool_size: u32,
}

impl std::fmt::Debug for PostgresSettings {
    /// The URL carries the password: show it the way `shop config` does.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut url = self.url.clone();
        if url.password().is_some() {
            let _ = url.set_password(Some("********"));
        }
        f.debug_struct("PostgresSettings")
            .field("url", &url.as_str())
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

impl PostgresSettings {
    /// The URL of one service's database on the server.
    pub fn database_url(&self, database: &str) -> Url {
        let mut url = self.url.clone();
        url.set_path(database);
        url
    }
}

/// What every service needs to verify tokens, and the user service to issue them.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub issuer: String,
    pub audience: String,
    /// Where other services reach the user service (for its JWKS).
    pub user_service_url: Url,
    /// The credentials this process presents for a service token (one of SHOP_SERVICE_CLIENTS).
    pub service_client_id: String,
    pub service_client_secret: Secret,
}

#[derive(Debug, Clone)]
pub struct UserSettings {
    pub port: u16,
    pub signing_key_file: PathBuf,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
    pub service_token_ttl: Duration,
    pub admin: Option<AdminAccount>,
    /// Service clients allowed to ask for a service token: `(client id, secret)`.
    pub service_clients: Vec<(String, Secret)>,
    pub hasher_workers: usize,
    /// Hash requests waiting for a worker beyond this are refused with 503.
    pub hasher_queue: usize,
    /// How long the link that proves an email address works.
    pub email_verification_ttl: Duration,
    /// How long a password reset link works.
    pub password_reset_ttl: Duration,
}

#[derive(Debug, Clone)]
pub struct ProductSettings {
    pub port: u16,
    /// Where services reach the product service directly (its internal reservation API).
    pub url: Url,
    /// How long stock stays reserved for an order that is neither committed nor released.
    pub reservation_ttl: Duration,
    /// How often the expiry actor looks for reservations past their time.
    pub reservation_sweep: Duration,
}

#[derive(Clone)]
pub struct CartSettings {
    pub port: u16,
    /// Where tools reach the cart service directly.
    pub url: Url,
    /// The MongoDB-compatible server; carts live in its database `shop_cart`.
    pub mongodb_url: MongoUrl,
    /// A cart with no request for this long is forgotten (its hibernated record too); the next
    /// request reads it from the store.
    pub idle_timeout: Duration,
    /// A cart actor with no message for this long hibernates: it stops and leaves a compact
    /// record that the next request wakes without reading the store. Off when not shorter than
    /// `idle_timeout`.
    pub hibernate_after: Duration,
    /// How long a product's name, price and availability are reused before asking again.
    pub product_cache_ttl: Duration,
    /// Test hooks (the admin "crash this cart" endpoint). Never on in production.
    pub test_hooks: bool,
    /// Fault injection for the fault suite: this percentage of cart actor messages panic.
    pub panic_percent: u8,
}

impl std::fmt::Debug for CartSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CartSettings")
            .field("port", &self.port)
            .field("url", &self.url.as_str())
            .field("mongodb_url", &self.mongodb_url)
            .field("idle_timeout", &self.idle_timeout)
            .field("hibernate_after", &self.hibernate_after)
            .field("product_cache_ttl", &self.product_cache_ttl)
            .field("test_hooks", &self.test_hooks)
            .field("panic_percent", &self.panic_percent)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct OrderSettings {
    pub port: u16,
    /// Where tools reach the order service directly.
    pub url: Url,
    /// An order not paid this long after it was placed is cancelled and its stock released.
    pub payment_grace: Duration,
    /// How long an order's stock reservation outlives its payment grace: the backstop that
    /// frees the stock of a checkout that died between reserving and storing its order.
    pub reservation_margin: Duration,
    /// An order actor with no message for this long stops; the next command brings it back.
    pub idle_timeout: Duration,
    /// Shipping methods by country zone.
    pub shipping: ShippingTable,
    /// Tax rates by country.
    pub tax: TaxTable,
    /// Whether catalogue prices include tax (VAT-style) or tax is added on top.
    pub prices_include_tax: bool,
    /// Whether checkout needs a proven email address (403 without one).
    pub require_verified_email: bool,
}

#[derive(Debug, Clone)]
pub struct PaymentSettings {
    pub port: u16,
    /// Where tools reach the payment service directly.
    pub url: Url,
    pub provider: PaymentProvider,
    /// How long the simulated provider takes to answer (load tests); zero when unset.
    pub simulated_latency: Duration,
    /// Stripe's API, e.g. `https://api.stripe.com` (a local server in tests).
    pub stripe_api_base: Url,
    /// Stripe's secret key; required when the provider is Stripe.
    pub stripe_secret_key: Option<Secret>,
    /// The webhook endpoint's signing secret (`whsec_…`).
    pub stripe_webhook_secret: Secret,
    /// A charge or refund that failed transiently is tried this many times in all.
    pub max_attempts: u32,
    /// A payment actor with no message for this long stops.
    pub idle_timeout: Duration,
    /// Test-only payment methods (`pm_test_crashAfterCharge`); refused in production.
    pub test_hooks: bool,
}

#[derive(Debug, Clone)]
pub struct NotificationSettings {
    pub port: u16,
    /// Where tools reach the notification service directly.
    pub url: Url,
    pub email: EmailProvider,
    /// `smtp://host:port` (Mailpit under dev/up); `smtps://user:password@host` for a real server.
    pub smtp_url: Url,
    /// The sender of every mail, e.g. `Shop <shop@shop.local>`.
    pub email_from: String,
    pub sendgrid_api_base: Url,
    pub sendgrid_api_key: Option<Secret>,
    pub sms: SmsProvider,
    /// What the `log` SMS provider writes.
    pub sms_log: SmsLog,
    pub twilio_api_base: Url,
    pub twilio_account_sid: Option<String>,
    pub twilio_auth_token: Option<Secret>,
    /// The number SMS are sent from.
    pub twilio_from: Option<String>,
    /// A directory of templates replacing the built-in ones (same file names).
    pub templates_dir: Option<PathBuf>,
    /// Sends of one message tried in all before it is `failed`.
    pub max_attempts: u32,
    /// A delivery actor with no message for this long stops.
    pub idle_timeout: Duration,
    /// The shop's web address: the links in account mails (verify, reset) point there.
    pub public_url: Url,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailProvider {
    Smtp,
    Sendgrid,
}

/// What the `log` SMS provider writes of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmsLog {
    /// The number and the text (development only).
    Full,
    /// The number with all but its last two digits masked, and the text's length only.
    Masked,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmsProvider {
    /// SMS are written to the service log and the delivery log only (development).
    Log,
    Twilio,
}

/// Who charges cards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentProvider {
    /// In-process, honouring Stripe's test payment methods; for development and load tests.
    Simulated,
    /// Stripe's HTTP API.
    Stripe,
}

#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// `host:port`, comma separated.
    pub brokers: String,
    /// Partitions of each topic the bridge creates.
    pub partitions: u32,
    /// Replicas of each topic the bridge creates.
    pub replication: u32,
    /// How often the outbox relay looks for rows when no notification came.
    pub outbox_poll: Duration,
    /// Deliveries of one message to a subscriber that keeps answering "retry", before the DLQ.
    pub max_attempts: u32,
    /// librdkafka's `debug` contexts (e.g. `broker,cgrp`), logged at debug level.
    pub debug: Option<String>,
    /// `client.id`: the instance, so the broker's view of a consumer group names the replicas.
    pub client_id: String,
    /// How long a consumer may stay out of its group, or have lag and receive nothing, while the
    /// cluster answers, before the bridge declares it stuck and is restarted with a fresh one.
    pub stuck_after: Duration,
    /// Restarts for a stuck consumer allowed within an hour; past that the bridge no longer
    /// starts and the failure escalates (the service stops, for its process manager to restart).
    pub stuck_restarts_per_hour: u32,
    /// How long the group coordinator waits for a consumer's heartbeat before it counts the
    /// consumer gone and gives its partitions to the others.
    pub session_timeout: Duration,
}

/// The broker's bounds of a consumer's session timeout (Kafka's `group.min.session.timeout.ms`
/// and `group.max.session.timeout.ms` defaults): outside them it refuses the consumer's join.
const SESSION_TIMEOUT_BOUNDS: (Duration, Duration) =
    (Duration::from_secs(6), Duration::from_secs(1800));

/// The admin that exists from the start.
#[derive(Debug, Clone)]
pub struct AdminAccount {
    pub email: String,
    pub password: Secret,
}

/// A secret value: `Debug` never prints it; [`Secret::expose`] is the one way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// A MongoDB connection string: `mongodb://` with one host or a replica set's several
/// (`a:27017,b:27017`, as the MongoDB operator writes it), or `mongodb+srv://`. Not a [`Url`]:
/// a list of hosts is not one. Checked by the driver's own parser; never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct MongoUrl(String);

impl MongoUrl {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The hosts, after the scheme and any credentials.
    fn split(raw: &str) -> Option<(&str, Option<&str>, &str)> {
        let rest = raw
            .strip_prefix("mongodb://")
            .or_else(|| raw.strip_prefix("mongodb+srv://"))?;
        let scheme = &raw[..raw.len() - rest.len()];
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        match authority.rsplit_once('@') {
            Some((credentials, hosts)) => Some((scheme, Some(credentials), hosts)),
            None => Some((scheme, None, authority)),
        }
    }

    /// What the driver itself accepts (its own parser, no DNS look-up).
    pub(crate) fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        mongodb::options::ConnectionString::parse(raw)
            .ok()
            .map(|_| Self(raw.to_owned()))
    }

    /// The string with its password replaced.
    pub fn redacted(&self) -> String {
        match Self::split(&self.0) {
            Some((scheme, Some(credentials), _)) => match credentials.split_once(':') {
                Some((user, _)) => {
                    let rest = &self.0[scheme.len() + credentials.len()..];
                    format!("{scheme}{user}:********{rest}")
                }
                None => self.0.clone(),
            },
            _ => self.0.clone(),
        }
    }
}

impl std::fmt::Debug for MongoUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(********)")
    }
}

/// Every variable that is wrong, each named.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration:\n{}", .problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    pub problems: Vec<Problem>,
    /// Every setting as it was read, secrets redacted (`shop config` shows them beside the
    /// problems).
    pub entries: Vec<Entry>,
}

impl std::fmt::Debug for ConfigError {
    /// The problems; the entries (every setting) are for `shop config`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigError")
            .field("problems", &self.problems)
            .finish_non_exhaustive()
    }
}

/// Whether `code` is an ISO 4217 currency code (upper case).
pub(crate) fn known_currency(code: &str) -> bool {
    iso_currency::Currency::from_code(code).is_some()
}

/// The machine's (or container's) name: distinct per replica under compose without configuring.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "shop".to_owned())
}

impl Settings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` instead of the process environment (tests).
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut r = Reader::new(lookup);

        let environment: Environment = r.get(
            "SHOP_ENV",
            "production",
            "production, staging or dev; anything but dev refuses development secrets and settings",
        );
        r.production = environment != Environment::Dev;

        let log_filter = r.get(
            "SHOP_LOG",
            "info,sqlx=warn",
            "log filter, tracing's EnvFilter syntax (e.g. info,shop_user=debug)",
        );
        let log_format = r.get("SHOP_LOG_FORMAT", "text", "text or json");
        let data_dir: PathBuf = r.get(
            "SHOP_DATA_DIR",
            ".data/dev",
            "folder for what a dev process generates (the token signing key)",
        );

        let instance = r
            .optional(
                "SHOP_INSTANCE",
                false,
                "name of this replica, sent as X-Shop-Instance and the Kafka client id (default: the host name)",
            )
            .unwrap_or_else(host_name);

        let http = HttpSettings {
            bind_host: r.get(
                "SHOP_BIND_HOST",
                "127.0.0.1",
                "address the services listen on (0.0.0.0 in containers)",
            ),
            body_limit: r.get(
                "SHOP_BODY_LIMIT",
                "65536",
                "largest request body in bytes; larger ones get 413",
            ),
            actor_timeout: r.get(
                "SHOP_ACTOR_TIMEOUT",
                "10s",
                "how long a request waits for an actor before answering 503",
            ),
            shutdown_grace: r.get(
                "SHOP_SHUTDOWN_GRACE",
                "10s",
                "how long in-flight requests may run on shutdown",
            ),
        };

        let postgres = PostgresSettings {
            url: r
                .secret(
                    "SHOP_POSTGRES_URL",
                    "postgres://shop:shop@127.0.0.1:15432/postgres",
                    "PostgreSQL server; each service uses its own database there (shop_user, …)",
                )
                .unwrap_or_else(placeholder_url),
            pool_size: r.get(
                "SHOP_POSTGRES_POOL_SIZE",
                "10",
                "connections per service database",
            ),
        };
        if postgres.url.password() == Some(dev_values::DATABASE_PASSWORD) {
            r.refuse_outside_dev(
                "SHOP_POSTGRES_URL",
                "carries the development database password",
            );
        }

        let auth = AuthSettings {
            issuer: r.get("SHOP_JWT_ISSUER", "shop-user", "iss of every access token"),
            audience: r.get("SHOP_JWT_AUDIENCE", "shop", "aud of every access token"),
            user_service_url: r.get(
                "SHOP_USER_URL",
                "http://127.0.0.1:8101",
                "where services reach the user service directly (JWKS, service tokens)",
            ),
            service_client_id: r.get(
                "SHOP_SERVICE_CLIENT_ID",
                "shop-services",
                "the client id this process asks for service tokens with",
            ),
            service_client_secret: Secret(
                r.secret(
                    "SHOP_SERVICE_CLIENT_SECRET",
                    dev_values::SERVICE_SECRET,
                    "the secret of SHOP_SERVICE_CLIENT_ID",
                )
                .unwrap_or_default(),
            ),
        };
        if auth.service_client_secret.expose() == dev_values::SERVICE_SECRET {
            r.refuse_outside_dev(
                "SHOP_SERVICE_CLIENT_SECRET",
                "is the built-in development secret",
            );
        }

        let Port(user_port) = r.get("SHOP_USER_PORT", "8101", "user service HTTP port");
        let signing_key_file: Option<PathBuf> = r.optional(
            "SHOP_JWT_PRIVATE_KEY_FILE",
            false,
            "Ed25519 private key (PKCS#8 PEM) the user service signs with; \
             in dev, generated as DATA_DIR/keys/jwt-ed25519.pem when unset",
        );
        if r.production && signing_key_file.is_none() {
            r.problems.push(Problem {
                name: "SHOP_JWT_PRIVATE_KEY_FILE",
                message: "required outside dev (keys are generated only in dev)".to_owned(),
            });
        }
        let signing_key_file =
            signing_key_file.unwrap_or_else(|| data_dir.join("keys").join("jwt-ed25519.pem"));
        r.show_derived("SHOP_JWT_PRIVATE_KEY_FILE", signing_key_file.display());

        let admin_email: Option<String> = r.optional(
            "SHOP_ADMIN_EMAIL",
            false,
            "admin account ensured at start (with SHOP_ADMIN_PASSWORD)",
        );
        let admin_password: Option<String> = r.optional(
            "SHOP_ADMIN_PASSWORD",
            true,
            "password of SHOP_ADMIN_EMAIL; set at start if the admin is created",
        );
        if let Some(password) = &admin_password {
            if password == dev_values::ADMIN_PASSWORD {
                r.refuse_outside_dev("SHOP_ADMIN_PASSWORD", "is the development admin's password");
            } else if password.chars().count() < MIN_ADMIN_PASSWORD {
                r.refuse_outside_dev("SHOP_ADMIN_PASSWORD", "is shorter than 12 characters");
            }
        }
        let admin = match (admin_email, admin_password) {
            (Some(email), Some(password)) => Some(AdminAccount {
                email,
                password: Secret(password),
            }),
            (None, None) => None,
            (Some(_), None) => {
                r.problems.push(Problem {
                    name: "SHOP_ADMIN_PASSWORD",
                    message: "required when SHOP_ADMIN_EMAIL is set".to_owned(),
                });
                None
            }
            (None, Some(_)) => {
                r.problems.push(Problem {
                    name: "SHOP_ADMIN_EMAIL",
                    message: "required when SHOP_ADMIN_PASSWORD is set".to_owned(),
                });
                None
            }
        };

        let service_clients: Option<String> = r.secret(
            "SHOP_SERVICE_CLIENTS",
            "shop-services:dev-service-secret",
            "id:secret pairs, comma separated, allowed to get service tokens",
        );
        let service_clients = match service_clients.map(|raw| parse_clients(&raw)) {
            Some(Ok(clients)) => {
                if clients
                    .iter()
                    .any(|(_, secret)| secret.expose() == dev_values::SERVICE_SECRET)
                {
                    r.refuse_outside_dev(
                        "SHOP_SERVICE_CLIENTS",
                        "holds the built-in development secret",
                    );
                }
                clients
            }
            Some(Err(message)) => {
                r.problems.push(Problem {
                    name: "SHOP_SERVICE_CLIENTS",
                    message,
                });
                Vec::new()
            }
            None => Vec::new(),
        };

        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let hasher_workers: Option<usize> = r.optional(
            "SHOP_HASHER_WORKERS",
            false,
            "password hashing actors (default: one per core)",
        );
        let hasher_workers = hasher_workers.unwrap_or(cores);
        r.show_derived("SHOP_HASHER_WORKERS", hasher_workers);
        if hasher_workers == 0 {
            r.problems.push(Problem {
                name: "SHOP_HASHER_WORKERS",
                message: "expected at least 1".to_owned(),
            });
        }

        let user = UserSettings {
            port: user_port,
            signing_key_file,
            access_token_ttl: r.get("SHOP_ACCESS_TOKEN_TTL", "15m", "life of an access token"),
            refresh_token_ttl: r.get("SHOP_REFRESH_TOKEN_TTL", "30d", "life of a refresh token"),
            service_token_ttl: r.get("SHOP_SERVICE_TOKEN_TTL", "5m", "life of a service token"),
            admin,
            service_clients,
            hasher_workers,
            hasher_queue: r.get(
                "SHOP_HASHER_QUEUE",
                "256",
                "hash requests that may wait for a worker; beyond it logins get 503",
            ),
            email_verification_ttl: r.get(
                "SHOP_EMAIL_VERIFICATION_TTL",
                "24h",
                "how long the link that proves an email address works",
            ),
            password_reset_ttl: r.get(
                "SHOP_PASSWORD_RESET_TTL",
                "30m",
                "how long a password reset link works",
            ),
        };

        let Port(product_port) = r.get("SHOP_PRODUCT_PORT", "8102", "product service HTTP port");
        let product = ProductSettings {
            port: product_port,
            url: r.get(
                "SHOP_PRODUCT_URL",
                "http://127.0.0.1:8102",
                "where services reach the product service directly (reservations)",
            ),
            reservation_ttl: r.get(
                "SHOP_RESERVATION_TTL",
                "15m",
                "how long stock stays reserved for an order that is not committed or released",
            ),
            reservation_sweep: r.get(
                "SHOP_RESERVATION_SWEEP",
                "2s",
                "how often expired reservations are looked for and released",
            ),
        };

        let Port(cart_port) = r.get("SHOP_CART_PORT", "8103", "cart service HTTP port");
        let test_hooks: bool = r.get(
            "SHOP_TEST_HOOKS",
            "false",
            "true enables test-only endpoints (crash a cart actor); refused in production",
        );
        if test_hooks && r.production {
            r.problems.push(Problem {
                name: "SHOP_TEST_HOOKS",
                message: "test hooks cannot be enabled in production".to_owned(),
            });
        }
        let panic_percent: u8 = r.get(
            "SHOP_TEST_CART_PANIC_PERCENT",
            "0",
            "test only (needs SHOP_TEST_HOOKS): this percentage of cart actor messages panic",
        );
        if panic_percent > 0 && !test_hooks {
            r.problems.push(Problem {
                name: "SHOP_TEST_CART_PANIC_PERCENT",
                message: "panicking carts is a test hook: it needs SHOP_TEST_HOOKS=true".to_owned(),
            });
        }
        if panic_percent > 100 {
            r.problems.push(Problem {
                name: "SHOP_TEST_CART_PANIC_PERCENT",
                message: "a percentage is at most 100".to_owned(),
            });
        }
        let cart = CartSettings {
            port: cart_port,
            url: r.get(
                "SHOP_CART_URL",
                "http://127.0.0.1:8103",
                "where tools reach the cart service directly",
            ),
            mongodb_url: r
                .secret(
                    "SHOP_MONGODB_URL",
                    "mongodb://127.0.0.1:27017",
                    "MongoDB-compatible server (FerretDB under dev/up), a connection string: one host or a replica set's; carts live in shop_cart",
                )
                .unwrap_or_else(|| MongoUrl("mongodb://unset.invalid".to_owned())),
            idle_timeout: r.get(
                "SHOP_CART_IDLE",
                "5m",
                "a cart idle this long is forgotten, hibernated or not; the next request reloads it",
            ),
            hibernate_after: r.get(
                "SHOP_CART_HIBERNATE",
                "30s",
                "a cart actor idle this long hibernates: a compact record the next request wakes",
            ),
            product_cache_ttl: r.get(
                "SHOP_CART_PRODUCT_CACHE_TTL",
                "2s",
                "how long the cart service reuses a product's name, price and availability",
            ),
            test_hooks,
            panic_percent,
        };

        let Port(order_port) = r.get("SHOP_ORDER_PORT", "8104", "order service HTTP port");
        let order = OrderSettings {
            port: order_port,
            url: r.get(
                "SHOP_ORDER_URL",
                "http://127.0.0.1:8104",
                "where tools reach the order service directly",
            ),
            payment_grace: r.get(
                "SHOP_ORDER_PAYMENT_GRACE",
                "15m",
                "an order unpaid this long after checkout is cancelled and its stock released",
            ),
            reservation_margin: r.get(
                "SHOP_ORDER_RESERVATION_MARGIN",
                "5m",
                "how long a checkout's stock reservation outlives the payment grace (frees the stock of a checkout that died halfway)",
            ),
            idle_timeout: r.get(
                "SHOP_ORDER_IDLE",
                "1m",
                "an order actor idle this long stops; the next command reloads it",
            ),
            shipping: r.get(
                "SHOP_SHIPPING",
                commerce::DEFAULT_SHIPPING,
                "shipping methods by country zone, as JSON (docs/api/orders.md)",
            ),
            tax: r.get(
                "SHOP_TAX_RATES",
                commerce::DEFAULT_TAX_RATES,
                "tax rates by country, COUNTRY:PERCENT comma separated, * for the rest",
            ),
            prices_include_tax: r.get(
                "SHOP_PRICES_INCLUDE_TAX",
                "true",
                "true: catalogue prices include tax (VAT-style); false: tax is added on top",
            ),
            require_verified_email: r.get(
                "SHOP_CHECKOUT_REQUIRE_VERIFIED_EMAIL",
                if r.production { "true" } else { "false" },
                "true: checkout needs a proven email address (403 without); default true outside dev",
            ),
        };
        if let Err(why) = order.shipping.check() {
            r.problems.push(Problem {
                name: "SHOP_SHIPPING",
                message: why,
            });
        }
        if order.payment_grace.is_zero() {
            r.problems.push(Problem {
                name: "SHOP_ORDER_PAYMENT_GRACE",
                message: "expected more than 0".to_owned(),
            });
        }

        let Port(payment_port) = r.get("SHOP_PAYMENT_PORT", "8105", "payment service HTTP port");
        let provider: PaymentProvider = r.get(
            "SHOP_PAYMENT_PROVIDER",
            "simulated",
            "simulated (Stripe's test cards, in process) or stripe",
        );
        let stripe_secret_key: Option<String> = r.optional(
            "SHOP_STRIPE_SECRET_KEY",
            true,
            "Stripe secret key (sk_…); required when SHOP_PAYMENT_PROVIDER=stripe",
        );
        if provider == PaymentProvider::Simulated && environment == Environment::Production {
            r.problems.push(Problem {
                name: "SHOP_PAYMENT_PROVIDER",
                message: "simulated takes no money: production needs stripe (staging may simulate)"
                    .to_owned(),
            });
        }
        if provider == PaymentProvider::Stripe && stripe_secret_key.is_none() {
            r.problems.push(Problem {
                name: "SHOP_STRIPE_SECRET_KEY",
                message: "required when SHOP_PAYMENT_PROVIDER=stripe".to_owned(),
            });
        }
        let payment = PaymentSettings {
            port: payment_port,
            url: r.get(
                "SHOP_PAYMENT_URL",
                "http://127.0.0.1:8105",
                "where tools reach the payment service directly",
            ),
            provider,
            simulated_latency: r
                .optional(
                    "SHOP_PAYMENT_SIMULATED_LATENCY",
                    false,
                    "how long the simulated provider takes per charge (load tests); none when unset",
                )
                .unwrap_or_default(),
            stripe_api_base: r.get(
                "SHOP_STRIPE_API_BASE",
                "https://api.stripe.com",
                "Stripe's API base URL",
            ),
            stripe_secret_key: stripe_secret_key.map(Secret),
            stripe_webhook_secret: Secret(
                r.secret(
                    "SHOP_STRIPE_WEBHOOK_SECRET",
                    dev_values::WEBHOOK_SECRET,
                    "signing secret of POST /payments/webhooks/stripe",
                )
                .unwrap_or_default(),
            ),
            max_attempts: r.get(
                "SHOP_PAYMENT_MAX_ATTEMPTS",
                "8",
                "tries of a charge or refund that fails transiently (timeouts, 5xx, 429)",
            ),
            idle_timeout: r.get(
                "SHOP_PAYMENT_IDLE",
                "1m",
                "a payment actor idle this long stops; the next message reloads it",
            ),
            test_hooks,
        };

        if payment.stripe_webhook_secret.expose() == dev_values::WEBHOOK_SECRET {
            r.refuse_outside_dev(
                "SHOP_STRIPE_WEBHOOK_SECRET",
                "is the built-in development secret",
            );
        }

        let Port(notification_port) = r.get(
            "SHOP_NOTIFICATION_PORT",
            "8106",
            "notification service HTTP port",
        );
        let email: EmailProvider = r.get(
            "SHOP_EMAIL_PROVIDER",
            "smtp",
            "smtp (Mailpit under dev/up) or sendgrid",
        );
        let sms: SmsProvider = r.get(
            "SHOP_SMS_PROVIDER",
            "log",
            "log (SMS only in the logs) or twilio",
        );
        let sms_log: SmsLog = r.get(
            "SHOP_SMS_LOG",
            "full",
            "what the log SMS provider writes: full (number and text) or masked (number masked, no text)",
        );
        if sms == SmsProvider::Log && sms_log == SmsLog::Full {
            r.refuse_outside_dev(
                "SHOP_SMS_LOG",
                "full would write phone numbers and messages to the log: use SHOP_SMS_PROVIDER=twilio, or SHOP_SMS_LOG=masked",
            );
        }
        let sendgrid_api_key: Option<String> = r.optional(
            "SHOP_SENDGRID_API_KEY",
            true,
            "SendGrid API key; required when SHOP_EMAIL_PROVIDER=sendgrid",
        );
        let twilio_account_sid: Option<String> = r.optional(
            "SHOP_TWILIO_ACCOUNT_SID",
            false,
            "Twilio account SID; required when SHOP_SMS_PROVIDER=twilio",
        );
        let twilio_auth_token: Option<String> = r.optional(
            "SHOP_TWILIO_AUTH_TOKEN",
            true,
            "Twilio auth token; required when SHOP_SMS_PROVIDER=twilio",
        );
        let twilio_from: Option<String> = r.optional(
            "SHOP_TWILIO_FROM",
            false,
            "the number SMS are sent from; required when SHOP_SMS_PROVIDER=twilio",
        );
        if email == EmailProvider::Sendgrid && sendgrid_api_key.is_none() {
            r.problems.push(Problem {
                name: "SHOP_SENDGRID_API_KEY",
                message: "required when SHOP_EMAIL_PROVIDER=sendgrid".to_owned(),
            });
        }
        if sms == SmsProvider::Twilio {
            for (name, missing) in [
                ("SHOP_TWILIO_ACCOUNT_SID", twilio_account_sid.is_none()),
                ("SHOP_TWILIO_AUTH_TOKEN", twilio_auth_token.is_none()),
                ("SHOP_TWILIO_FROM", twilio_from.is_none()),
            ] {
                if missing {
                    r.problems.push(Problem {
                        name,
                        message: "required when SHOP_SMS_PROVIDER=twilio".to_owned(),
                    });
                }
            }
        }
        let notification = NotificationSettings {
            port: notification_port,
            url: r.get(
                "SHOP_NOTIFICATION_URL",
                "http://127.0.0.1:8106",
                "where tools reach the notification service directly",
            ),
            email,
            smtp_url: r
                .secret(
                    "SHOP_SMTP_URL",
                    "smtp://127.0.0.1:1025",
                    "SMTP server (Mailpit under dev/up); smtps://user:password@host for a real one",
                )
                .unwrap_or_else(placeholder_url),
            email_from: r.get(
                "SHOP_EMAIL_FROM",
                "Shop <shop@shop.local>",
                "the sender of every mail",
            ),
            sendgrid_api_base: r.get(
                "SHOP_SENDGRID_API_BASE",
                "https://api.sendgrid.com",
                "SendGrid's API base URL",
            ),
            sendgrid_api_key: sendgrid_api_key.map(Secret),
            sms,
            sms_log,
            twilio_api_base: r.get(
                "SHOP_TWILIO_API_BASE",
                "https://api.twilio.com",
                "Twilio's API base URL",
            ),
            twilio_account_sid,
            twilio_auth_token: twilio_auth_token.map(Secret),
            twilio_from,
            templates_dir: r.optional(
                "SHOP_NOTIFICATION_TEMPLATES",
                false,
                "a directory of templates replacing the built-in ones (same file names)",
            ),
            max_attempts: r.get(
                "SHOP_NOTIFICATION_MAX_ATTEMPTS",
                "6",
                "sends of one message tried (with backoff) before it is failed",
            ),
            idle_timeout: r.get(
                "SHOP_NOTIFICATION_IDLE",
                "1m",
                "a delivery actor idle this long stops",
            ),
            public_url: r.get(
                "SHOP_PUBLIC_URL",
                "http://localhost:8080",
                "the shop's web address; links in account mails (verify an email, reset a password) point there",
            ),
        };

        let kafka = KafkaSettings {
            brokers: r.get(
                "SHOP_KAFKA_BROKERS",
                "127.0.0.1:9092",
                "Kafka bootstrap servers, host:port comma separated",
            ),
            partitions: r.get(
                "SHOP_KAFKA_PARTITIONS",
                "3",
                "partitions of each topic created at start",
            ),
            replication: r.get(
                "SHOP_KAFKA_REPLICATION",
                "1",
                "replicas of each topic created at start",
            ),
            outbox_poll: r.get(
                "SHOP_OUTBOX_POLL",
                "1s",
                "how often the outbox relay looks for rows besides being notified",
            ),
            max_attempts: r.get(
                "SHOP_EVENT_MAX_ATTEMPTS",
                "5",
                "deliveries of a message a subscriber keeps retrying, before it goes to the DLQ",
            ),
            debug: r.optional(
                "SHOP_KAFKA_DEBUG",
                false,
                "librdkafka debug contexts such as broker,cgrp (shown with SHOP_LOG=librdkafka=debug)",
            ),
            client_id: instance.clone(),
            stuck_after: r.get(
                "SHOP_KAFKA_STUCK_AFTER",
                "30s",
                "a consumer out of its group, or lagging without progress, this long while the cluster answers is restarted",
            ),
            stuck_restarts_per_hour: r.get(
                "SHOP_KAFKA_STUCK_RESTARTS",
                "6",
                "restarts for a stuck consumer allowed within an hour before the service gives up",
            ),
            session_timeout: r.get(
                "SHOP_KAFKA_SESSION_TIMEOUT",
                "15s",
                "a consumer whose heartbeats go unanswered this long leaves its group (its partitions go to the others); 6s to 30m",
            ),
        };
        let (shortest, longest) = SESSION_TIMEOUT_BOUNDS;
        if !(shortest..=longest).contains(&kafka.session_timeout) {
            r.problems.push(Problem {
                name: "SHOP_KAFKA_SESSION_TIMEOUT",
                message: format!(
                    "{:?} is outside what the broker accepts ({shortest:?} to {longest:?})",
                    kafka.session_timeout
                ),
            });
        }

        let tracing = TraceSettings {
            endpoint: r.optional(
                "SHOP_TRACE_ENDPOINT",
                false,
                "OTLP/HTTP traces URL of the trace store (e.g. http://127.0.0.1:4318/v1/traces); unset, tracing is off",
            ),
            sample_ratio: r.get(
                "SHOP_TRACE_SAMPLE_RATIO",
                "0.1",
                "fraction of the traces begun here that are kept; a trace continued from a caller keeps the caller's decision",
            ),
            query_url: r.optional(
                "SHOP_TRACE_QUERY_URL",
                false,
                "the trace store's query API (Jaeger's, e.g. http://127.0.0.1:16686), read by the observer's trace view",
            ),
        };

        if !r.problems.is_empty() {
            return Err(ConfigError {
                problems: r.problems,
                entries: r.entries,
            });
        }
        Ok(Self {
            environment,
            instance,
            log_filter,
            log_format,
            data_dir,
            http,
            postgres,
            auth,
            user,
            product,
            cart,
            order,
            payment,
            notification,
            kafka,
            tracing,
            entries: r.entries,
        })
    }

    /// Every setting as read, secrets redacted, in the order they are documented.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// `shop config`'s output: one `NAME=value` line per setting, with where it came from.
    pub fn render(&self) -> String {
        render_entries(&self.entries)
    }
}

/// One `NAME = value  # origin; help` line per setting.
pub fn render_entries(entries: &[Entry]) -> String {
    let width = entries.iter().map(|e| e.name.len()).max().unwrap_or(0);
    entries
        .iter()
        .map(|entry| {
            let origin = if entry.from_env { "env" } else { "default" };
            format!(
                "{:width$} = {:40} # {origin}; {}\n",
                entry.name, entry.shown, entry.help
            )
        })
        .collect()
}

impl Settings {
    /// docs/operations.md's configuration table: every variable, its `dev/up` default, its use.
    pub fn render_markdown(&self) -> String {
        render_markdown(&self.entries)
    }
}

/// The configuration table of docs/operations.md, of these settings.
pub fn render_markdown(entries: &[Entry]) -> String {
    let mut out = String::from("| variable | default | meaning |\n|---|---|---|\n");
    for entry in entries {
        let default = match entry.default {
            // The shipping and tax tables: documented in docs/api/orders.md beside what they mean.
            Some(default) if default.len() > 60 => "built in (docs/api/orders.md)".to_owned(),
            Some(default) if entry.secret => {
                format!("`{default}` in dev; required outside dev")
            }
            Some(default) => format!("`{default}`"),
            None => "unset".to_owned(),
        };
        out.push_str(&format!(
            "| `{}` | {default} | {} |\n",
            entry.name, entry.help
        ));
    }
    out
}

fn parse_clients(raw: &str) -> Result<Vec<(String, Secret)>, String> {
    raw.split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once(':') {
            Some((id, secret)) if !id.is_empty() && secret.len() >= 16 => {
                Ok((id.to_owned(), Secret::new(secret)))
            }
            Some((id, _)) if !id.is_empty() => Err(format!(
                "the secret of client {id:?} is shorter than 16 characters"
            )),
            _ => Err("expected id:secret pairs separated by commas".to_owned()),
        })
        .collect()
}

/// Stands in for a URL whose variable was reported as a problem; never used, since
/// `from_lookup` then returns the problems instead of settings.
fn placeholder_url() -> Url {
    Url::parse("postgres://unset.invalid/").expect("a constant URL parses")
}

#[cfg(test)]
mod tests;
