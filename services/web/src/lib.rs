//! What every Shop service's HTTP surface shares.
//!
//! - [`app`]: a service's endpoint: its OpenAPI operations and document, `/health`, `/ready`,
//!   `/metrics`, `/admin/tree`, and the shared middleware;
//! - [`server`]: the `http` actor that owns the poem server, and graceful shutdown;
//! - [`problem`]: errors as `application/problem+json`;
//! - [`request_id`]: `X-Request-ID` in, out, and in every log line;
//! - [`auth`] and [`jwks`]: access-token verification with the user service's public keys;
//! - [`metrics`]: Prometheus metrics;
//! - [`postgres`]: each service's own database, created, migrated and pooled.

pub mod address;
pub mod app;
pub mod auth;
pub mod jwks;
pub mod metrics;
pub mod paging;
pub mod postgres;
pub mod problem;
pub mod request_id;
pub mod server;
pub mod service_token;
pub mod text;
pub mod traces;

pub use address::{Address, AddressError};
pub use app::{ReadinessCheck, ServiceWeb};
pub use auth::{BearerAuth, Caller, Claims, Role, TokenVerifier};
pub use paging::Paging;
pub use problem::{ApiError, ProblemKind};
pub use server::{HttpServer, HttpServerArgs, RouteFactory, Shutdown};
pub use service_token::{ServiceTokenError, ServiceTokens};
