//! A snapshot of a supervision tree, walked from a service's root with `get_children`.
//!
//! ractor has no tree dump of its own; this is what `/admin/tree` and `shop tree` show. Dynamic
//! groups (thousands of carts) are summarised as a count and the first few children, so the
//! snapshot of a busy service stays small.

use chrono::{DateTime, Utc};
use ractor::{ActorCell, ActorStatus};
use serde::{Deserialize, Serialize};

use crate::meta;
use crate::policy::Restart;

/// One actor in a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActorNode {
    /// ractor's actor id (`node.pid`), unique while the actor lives.
    pub id: String,
    pub name: Option<String>,
    /// What the actor is: `supervisor`, `http`, `pool`, `worker`, `cart`, …
    pub kind: String,
    /// `running`, `starting`, `stopping`, …
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub restart: Option<Restart>,
    pub restarts: usize,
    pub started_at: Option<DateTime<Utc>>,
    /// Messages handled since it (re)started (actors that time their handling).
    #[serde(default)]
    pub messages: u64,
    /// Mean time to handle one of them, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub mean_handling_ms: Option<f64>,
    /// Why it was last restarted, when its supervisor knows.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub last_failure: Option<String>,
    /// What the actor says about itself right now (a bridge: its consumer's state).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub detail: Option<String>,
    pub children: Vec<ActorNode>,
    /// How many children there are when `children` lists only some of them.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub children_total: Option<usize>,
}

/// How much of a big tree a snapshot keeps.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotLimits {
    /// Children listed for a dynamic group (and for any actor with more children than
    /// `max_children`).
    pub group_sample: usize,
    pub max_children: usize,
}

impl Default for SnapshotLimits {
    fn default() -> Self {
        Self {
            group_sample: 10,
            max_children: 100,
        }
    }
}

/// The tree below (and including) `root`.
pub fn snapshot(root: &ActorCell, limits: SnapshotLimits) -> ActorNode {
    node(root, None, limits)
}

fn node(cell: &ActorCell, parent_kind: Option<&str>, limits: SnapshotLimits) -> ActorNode {
    let name = cell.get_name();
    let meta = name.as_deref().and_then(meta::get);
    let kind = match (&meta, parent_kind) {
        (Some(meta), _) => meta.kind.clone(),
        // Pools (ractor factories) name none of their workers.
        (None, Some("pool")) => "worker".to_owned(),
        (None, _) => "actor".to_owned(),
    };
    let group = meta.as_ref().is_some_and(|meta| meta.group);

    let mut children = cell.get_children();
    let total = children.len();
    let keep = if group || total > limits.max_children {
        limits.group_sample
    } else {
        total
    };
    if group && keep < total {
        // A big group shows the members that were restarted, then its busiest, the newest
        // first among equals: picked in linear time, then ordered, so a snapshot of 100,000
        // carts stays cheap.
        type Rank = std::cmp::Reverse<(usize, u64, ractor::ActorId)>;
        let mut ranked: Vec<(Rank, ActorCell)> = children
            .into_iter()
            .map(|child| {
                let (restarts, messages) = child
                    .get_name()
                    .as_deref()
                    .and_then(meta::get)
                    .map_or((0, 0), |meta| (meta.restarts, meta.messages));
                (
                    std::cmp::Reverse((restarts, messages, child.get_id())),
                    child,
                )
            })
            .collect();
        if keep > 0 {
            ranked.select_nth_unstable_by(keep - 1, |a, b| a.0.cmp(&b.0));
        }
        ranked.truncate(keep);
        ranked.sort_by_key(|a| a.0);
        children = ranked.into_iter().map(|(_, child)| child).collect();
    } else {
        // get_children comes from a hash map; order by id so snapshots are stable.
        children.sort_by_key(|child| child.get_id());
    }
    let children: Vec<ActorNode> = children
        .iter()
        .take(keep)
        .map(|child| node(child, Some(&kind), limits))
        .collect();

    ActorNode {
        id: cell.get_id().to_string(),
        name,
        status: status_label(cell.get_status()).to_owned(),
        restart: meta.as_ref().and_then(|meta| meta.restart),
        restarts: meta.as_ref().map_or(0, |meta| meta.restarts),
        started_at: meta.as_ref().map(|meta| meta.started_at),
        messages: meta.as_ref().map_or(0, |meta| meta.messages),
        last_failure: meta.as_ref().and_then(|meta| meta.last_failure.clone()),
        detail: meta.as_ref().and_then(|meta| meta.detail.clone()),
        mean_handling_ms: meta
            .as_ref()
            .filter(|meta| meta.messages > 0)
            .map(|meta| meta.handling.as_secs_f64() * 1000.0 / meta.messages as f64),
        children_total: (children.len() < total).then_some(total),
        children,
        kind,
    }
}

fn status_label(status: ActorStatus) -> &'static str {
    match status {
        ActorStatus::Unstarted => "unstarted",
        ActorStatus::Starting => "starting",
        ActorStatus::Running => "running",
        ActorStatus::Upgrading => "upgrading",
        ActorStatus::Draining => "draining",
        ActorStatus::Stopping => "stopping",
        ActorStatus::Stopped => "stopped",
    }
}

/// A part of a rendered line that a terminal may colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Piece<'a> {
    Status(&'a str),
    Restarts(usize),
}

impl Piece<'_> {
    /// The piece as plain text.
    pub fn plain(self) -> String {
        match self {
            Piece::Status(status) => status.to_owned(),
            Piece::Restarts(restarts) => format!("restarts={restarts}"),
        }
    }
}

impl ActorNode {
    /// The tree as indented lines, like `pstree`: `name [kind] status restarts=N`.
    pub fn render_text(&self) -> String {
        self.render_painted(&|_, piece| piece.plain())
    }

    /// [`render_text`](Self::render_text), with `paint` deciding how each status and restart
    /// count of each node is written (a terminal colours them).
    pub fn render_painted(&self, paint: &dyn Fn(&ActorNode, Piece<'_>) -> String) -> String {
        let mut out = String::new();
        self.render_into(&mut out, "", "", paint);
        out
    }

    fn render_into(
        &self,
        out: &mut String,
        first_prefix: &str,
        rest_prefix: &str,
        paint: &dyn Fn(&ActorNode, Piece<'_>) -> String,
    ) {
        let name = self.name.as_deref().unwrap_or("-");
        out.push_str(&format!(
            "{first_prefix}{name} [{}] {} {}",
            self.kind,
            paint(self, Piece::Status(&self.status)),
            paint(self, Piece::Restarts(self.restarts))
        ));
        if let Some(restart) = self.restart {
            out.push_str(&format!(" policy={}", restart_label(restart)));
        }
        if let Some(mean) = self.mean_handling_ms {
            out.push_str(&format!(" msgs={} avg={mean:.2}ms", self.messages));
        }
        out.push_str(&format!(" id={}", self.id));
        if let Some(detail) = &self.detail {
            out.push_str(&format!(" ({detail})"));
        }
        out.push('\n');
        let shown = self.children.len();
        let hidden = self.children_total.map_or(0, |total| total - shown);
        for (index, child) in self.children.iter().enumerate() {
            let last = index + 1 == shown && hidden == 0;
            let (branch, continuation) = if last {
                ("└── ", "    ")
            } else {
                ("├── ", "│   ")
            };
            child.render_into(
                out,
                &format!("{rest_prefix}{branch}"),
                &format!("{rest_prefix}{continuation}"),
                paint,
            );
        }
        if hidden > 0 {
            out.push_str(&format!("{rest_prefix}└── … {hidden} more\n"));
        }
    }

    /// Finds a node by actor name anywhere below this one.
    pub fn find(&self, name: &str) -> Option<&ActorNode> {
        if self.name.as_deref() == Some(name) {
            return Some(self);
        }
        self.children.iter().find_map(|child| child.find(name))
    }
}

fn restart_label(restart: Restart) -> &'static str {
    match restart {
        Restart::Permanent => "permanent",
        Restart::Transient => "transient",
        Restart::Temporary => "temporary",
    }
}

#[cfg(test)]
#[path = "tree_tests.rs"]
mod tests;
