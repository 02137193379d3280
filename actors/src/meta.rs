//! What ractor does not know about an actor but a tree snapshot shows: its kind label, its
//! restart policy, when it (re)started and how often it was restarted.
//!
//! Keyed by actor name, which is unique in a process and stable across restarts. Actors that come
//! and go by the thousand (carts, orders) are recorded with [`track`] and removed with [`untrack`]
//! by the registry that owns them, so the map never outgrows the live tree.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use dashmap::DashMap;

use crate::policy::Restart;

#[derive(Debug, Clone)]
pub(crate) struct ActorMeta {
    pub kind: String,
    pub restart: Option<Restart>,
    pub started_at: DateTime<Utc>,
    pub restarts: usize,
    /// Children of this actor are a dynamic group: a snapshot lists only the first few.
    pub group: bool,
}

static META: LazyLock<DashMap<String, ActorMeta>> = LazyLock::new(DashMap::new);

pub(crate) fn record_start(name: &str, kind: &str, restart: Option<Restart>, restarts: usize) {
    let group = META.get(name).is_some_and(|meta| meta.group);
    META.insert(
        name.to_owned(),
        ActorMeta {
            kind: kind.to_owned(),
            restart,
            started_at: Utc::now(),
            restarts,
            group,
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
