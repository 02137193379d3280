//! What ractor does not know about an actor but a tree snapshot shows: its kind label, its
//! restart policy, when it (re)started and how often it was restarted.
//!
//! Keyed by actor name, which is unique in a process and stable across restarts. Actors that come
//! and go by the thousand (carts, orders) are recorded with [`track`] and removed with [`untrack`]
//! by the registry that owns them, so the map never outgrows the live tree.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use dashmap::DashMap;
use ractor::ActorCell;

use crate::policy::Restart;

#[derive(Debug, Clone)]
pub(crate) struct ActorMeta {
    pub kind: String,
    pub restart: Option<Restart>,
    pub started_at: DateTime<Utc>,
    pub restarts: usize,
    /// Children of this actor are a dynamic group: a snapshot lists only the first few.
    pub group: bool,
    /// Messages handled since it (re)started, and the time that took.
    pub messages: u64,
    pub handling: Duration,
    /// Why its previous incarnation failed, when its owner knows.
    pub last_failure: Option<String>,
    /// What the actor says about itself right now (a bridge: its consumer's state).
    pub detail: Option<String>,
}

static META: LazyLock<DashMap<String, ActorMeta>> = LazyLock::new(DashMap::new);

pub(crate) fn record_start(name: &str, kind: &str, restart: Option<Restart>, restarts: usize) {
    let (group, last_failure) = META.get(name).map_or((false, None), |meta| {
        (meta.group, meta.last_failure.clone())
    });
    META.insert(
        name.to_owned(),
        ActorMeta {
            kind: kind.to_owned(),
            restart,
            started_at: Utc::now(),
            restarts,
            group,
            messages: 0,
            handling: Duration::ZERO,
            // A restarted actor shows why its previous incarnation failed, if that was noted.
            last_failure: if restarts > 0 { last_failure } else { None },
            detail: None,
        },
    );
}

pub(crate) fn get(name: &str) -> Option<ActorMeta> {
    META.get(name).map(|meta| meta.clone())
}

/// Records an actor that its owner starts by itself (an entity under a registry, say).
pub fn track(name: &str, kind: &str, restart: Restart, restarts: usize) {
    record_start(name, kind, Some(restart), restarts);
}

/// Records why the named actor's previous incarnation failed (shown in snapshots).
pub fn note_failure(name: &str, reason: &str) {
    if let Some(mut meta) = META.get_mut(name) {
        meta.last_failure = Some(reason.chars().take(300).collect());
    }
}

/// Sets what the named actor says about itself in snapshots (one short line).
pub fn set_detail(name: &str, detail: &str) {
    if let Some(mut meta) = META.get_mut(name)
        && meta.detail.as_deref() != Some(detail)
    {
        meta.detail = Some(detail.to_owned());
    }
}

/// Forgets an actor that stopped for good.
pub fn untrack(name: &str) {
    META.remove(name);
}

/// Marks the named actor's children as a dynamic group, summarised in snapshots.
pub fn mark_group(name: &str) {
    META.entry(name.to_owned())
        .and_modify(|meta| meta.group = true)
        .or_insert_with(|| ActorMeta {
            kind: "group".to_owned(),
            restart: None,
            started_at: Utc::now(),
            restarts: 0,
            group: true,
            messages: 0,
            handling: Duration::ZERO,
            last_failure: None,
            detail: None,
        });
}

/// Actors known by kind: how many are alive, and how many restarts the live ones have behind
/// them (for `/metrics`). Group markers are not actors of their own and are left out.
pub fn census() -> Vec<(String, usize, usize)> {
    let mut by_kind: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    for entry in META.iter() {
        if entry.kind == "group" {
            continue;
        }
        let counts = by_kind.entry(entry.kind.clone()).or_default();
        counts.0 += 1;
        counts.1 += entry.restarts;
    }
    by_kind
        .into_iter()
        .map(|(kind, (alive, restarts))| (kind, alive, restarts))
        .collect()
}

/// Messages handled by actors of each kind since the process started, and the time spent.
static BY_KIND: LazyLock<DashMap<String, (u64, Duration)>> = LazyLock::new(DashMap::new);

/// Times one message's handling; dropped at the end of `handle`, it adds the message to the
/// actor's figures (shown in tree snapshots) and to its kind's (on `/metrics`).
/// The span of `actor` handling `message`, in the trace the message came with (`trace`, a W3C
/// `traceparent`), with the actor's name and kind; no span for a message without a trace.
pub fn handling_span(actor: ActorCell, message: &str, trace: Option<&str>) -> tracing::Span {
    // Looked up only for a trace being kept: the others get no span.
    let Some(trace) = trace.filter(|trace| shop_telemetry::sampled(trace).is_some()) else {
        return tracing::Span::none();
    };
    let name = actor.get_name().unwrap_or_default();
    let kind = META
        .get(&name)
        .map(|meta| meta.kind.clone())
        .unwrap_or_default();
    shop_telemetry::actor_span(&name, &kind, message, Some(trace))
}

pub struct Handling {
    actor: ActorCell,
    started: Instant,
}

impl Handling {
    pub fn start(actor: ActorCell) -> Self {
        Self {
            actor,
            started: Instant::now(),
        }
    }
}

impl Drop for Handling {
    fn drop(&mut self) {
        let took = self.started.elapsed();
        let Some(name) = self.actor.get_name() else {
            return;
        };
        let Some(mut meta) = META.get_mut(&name) else {
            return;
        };
        meta.messages += 1;
        meta.handling += took;
        let mut totals = BY_KIND.entry(meta.kind.clone()).or_default();
        totals.0 += 1;
        totals.1 += took;
    }
}

/// Messages handled and seconds spent handling them, by kind of actor (for `/metrics`).
pub fn handled_by_kind() -> Vec<(String, u64, f64)> {
    BY_KIND
        .iter()
        .map(|entry| (entry.key().clone(), entry.0, entry.1.as_secs_f64()))
        .collect()
}
