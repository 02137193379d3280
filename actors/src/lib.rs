//! The actor runtime every Shop service stands on.
//!
//! - [`policy`]: restart policy, backoff and restart intensity;
//! - [`supervisor`]: declaring a supervision tree ([`SupervisorSpec`], [`Child`]);
//! - [`service`]: running a tree as a service, and noticing when it gives up;
//! - [`tree`]: a JSON-ready snapshot of a live tree;
//! - [`testing`]: waiting on conditions in tests.
//!
//! Supervision itself is `ractor-supervisor`'s (OTP-style one-for-one, meltdown, backoff); see
//! `actors/README.md` for the semantics.

pub mod entities;
pub mod meta;
pub mod policy;
pub mod service;
pub mod supervisor;
pub mod sweeper;
pub mod testing;
pub mod tree;

pub use policy::{Backoff, Intensity, Restart};
pub use service::{Service, ServiceStopped};
pub use supervisor::{Child, SupervisorSpec};
pub use tree::{ActorNode, Piece, SnapshotLimits, snapshot};

/// The reason an actor stopped by an operator (`POST /admin/actors/{name}/stop`) gives. As with
/// Erlang's `exit(Pid, kill)`, it counts as an abnormal exit: permanent and transient actors
/// alike are restarted under their declared policy and intensity.
pub const STOPPED_BY_OPERATOR: &str = "stopped by an operator";
