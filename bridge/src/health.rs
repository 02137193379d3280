//! Whether the bridge's consumer is doing its job, and the watchdog that ends it when it is not.
//!
//! librdkafka has a long record of consumers that never rejoin their group after the group
//! coordinator went away (a broker restart, a coordinator moving): the client keeps running,
//! reports nothing fatal, and reads nothing, so the service silently stops reacting to events.
//! No setting prevents every such wedge, so the bridge watches its consumer instead. What it
//! knows comes from librdkafka's statistics (the group state, every second), its rebalance and
//! commit callbacks, the consume loop (messages received, whether it is asking for more) and the
//! lag task (how far each assigned partition's end is ahead of the consumer).
//!
//! A consumer is **stuck** when, for `SHOP_KAFKA_STUCK_AFTER` while the cluster answers metadata
//! requests and the bridge is asking for messages, it is either not a member of its group or it
//! has lag and receives nothing. The bridge then fails with that reason, and its supervisor
//! starts it again with a fresh consumer — let it crash. A broker that is simply down is not a
//! stuck consumer: while metadata requests fail the clocks stand still and no restart is spent.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::TopicPartitionList;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use serde::Deserialize;

/// What is known about one consumer, as its callbacks and the bridge's tasks report it.
#[derive(Debug, Clone)]
pub(crate) struct Observed {
    /// librdkafka's group handler state and join state from its latest statistics: `up` and
    /// `steady` together mean a member of the group with its assignment in hand.
    pub group_state: String,
    pub join_state: String,
    pub stats_at: Option<Instant>,
    /// Partitions assigned by the last rebalance.
    pub assigned: usize,
    pub last_rebalance: Option<Instant>,
    /// The last message the consume loop received.
    pub last_message: Option<Instant>,
    pub last_commit: Option<Instant>,
    /// Each assigned partition's committed offset, from the statistics: where the consumer
    /// stands on a partition it has read nothing from since its assignment.
    pub committed: HashMap<(String, i32), i64>,
    /// Messages between the consumer's position and the end of its partitions, when measured.
    pub lag: Option<i64>,
    pub lag_at: Option<Instant>,
    /// Whether the consume loop is waiting for messages right now (rather than held back by the
    /// messages it is handling): only then can a silent consumer be blamed.
    pub polling: bool,
    pub started: Instant,
}

impl Observed {
    fn new(now: Instant) -> Self {
        Self {
            group_state: String::new(),
            join_state: String::new(),
            stats_at: None,
            assigned: 0,
            last_rebalance: None,
            last_message: None,
            last_commit: None,
            committed: HashMap::new(),
            lag: None,
            lag_at: None,
            polling: false,
            started: now,
        }
    }

    /// A member of its group, by statistics at most `STATS_STALE` old.
    pub fn member(&self, now: Instant) -> bool {
        self.stats_at
            .is_some_and(|at| now.saturating_duration_since(at) <= STATS_STALE)
            && self.group_state == "up"
            && self.join_state == "steady"
    }

    /// Behind the end of its partitions, by a measurement at most `LAG_STALE` old.
    pub fn lagging(&self, now: Instant) -> bool {
        self.lag.is_some_and(|lag| lag > 0)
            && self
                .lag_at
                .is_some_and(|at| now.saturating_duration_since(at) <= LAG_STALE)
    }
}

/// Statistics older than this say nothing about the group any more (they come every second
/// while the consumer is polled).
const STATS_STALE: Duration = Duration::from_secs(5);
/// The lag is measured every 5 s.
const LAG_STALE: Duration = Duration::from_secs(15);
/// Lag without a message for this long is worth showing (and logging) as a stall.
const STALL_NOTICE: Duration = Duration::from_secs(10);

/// The observations of one consumer, shared by librdkafka's callbacks and the bridge's tasks.
pub(crate) struct ConsumerHealth {
    observed: Mutex<Observed>,
}

impl ConsumerHealth {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            observed: Mutex::new(Observed::new(Instant::now())),
        })
    }

    fn update(&self, change: impl FnOnce(&mut Observed)) {
        change(&mut self.observed.lock().unwrap_or_else(PoisonError::into_inner));
    }

    pub fn view(&self) -> Observed {
        self.observed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn received(&self) {
        self.update(|seen| seen.last_message = Some(Instant::now()));
    }

    pub fn polling(&self, polling: bool) {
        self.update(|seen| seen.polling = polling);
    }

    pub fn lag(&self, lag: i64) {
        self.update(|seen| {
            seen.lag = Some(lag);
            seen.lag_at = Some(Instant::now());
        });
    }
}

/// The part of librdkafka's statistics the health needs (the whole document is larger).
#[derive(Deserialize)]
struct Statistics {
    cgrp: Option<GroupStatistics>,
    #[serde(default)]
    topics: HashMap<String, TopicStatistics>,
}

#[derive(Deserialize)]
struct TopicStatistics {
    #[serde(default)]
    partitions: HashMap<String, PartitionStatistics>,
}

#[derive(Deserialize)]
struct PartitionStatistics {
    #[serde(default = "invalid_offset")]
    committed_offset: i64,
}

/// librdkafka's "no offset" (`RD_KAFKA_OFFSET_INVALID`).
fn invalid_offset() -> i64 {
    -1001
}

#[derive(Deserialize)]
struct GroupStatistics {
    state: String,
    join_state: String,
}

/// The bridge consumer's librdkafka context: its callbacks feed the [`ConsumerHealth`].
pub(crate) struct BridgeContext {
    pub health: Arc<ConsumerHealth>,
    pub group: &'static str,
}

impl ClientContext for BridgeContext {
    fn stats_raw(&self, statistics: &[u8]) {
        let statistics = match serde_json::from_slice::<Statistics>(statistics) {
            Ok(statistics) => statistics,
            Err(error) => {
                tracing::debug!(%error, "unreadable librdkafka statistics");
                return;
            }
        };
        let committed = statistics
            .topics
            .into_iter()
            .flat_map(|(topic, stats)| {
                stats
                    .partitions
                    .into_iter()
                    .filter_map(move |(partition, stats)| {
                        // "-1" is librdkafka's bucket for messages not yet given a partition.
                        let partition = partition.parse::<i32>().ok().filter(|p| *p >= 0)?;
                        (stats.committed_offset >= 0)
                            .then(|| ((topic.clone(), partition), stats.committed_offset))
                    })
            })
            .collect();
        self.health.update(|seen| {
            seen.committed = committed;
            if let Some(group) = statistics.cgrp {
                seen.group_state = group.state;
                seen.join_state = group.join_state;
                seen.stats_at = Some(Instant::now());
            }
        });
    }
}

impl ConsumerContext for BridgeContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(partitions) = rebalance {
            tracing::info!(
                group = self.group,
                partitions = partitions.count(),
                "kafka consumer rebalancing: partitions revoked"
            );
            self.health.update(|seen| seen.assigned = 0);
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                let assigned = partitions.count();
                tracing::info!(
                    group = self.group,
                    assigned,
                    "kafka consumer joined its group"
                );
                self.health.update(|seen| {
                    seen.assigned = assigned;
                    seen.last_rebalance = Some(Instant::now());
                });
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(error) => {
                tracing::warn!(group = self.group, %error, "kafka consumer rebalance failed");
            }
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _: &TopicPartitionList) {
        // "No offset" is a periodic commit with nothing new to commit: not news.
        if result.is_ok() {
            self.health
                .update(|seen| seen.last_commit = Some(Instant::now()));
        }
    }
}

/// What the watchdog makes of a consumer at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Phase {
    /// A member of its group, reading or caught up.
    Joined { partitions: usize },
    /// Not (yet) a member, for this long, while the cluster answers.
    Rebalancing { for_: Duration },
    /// Metadata requests fail: the broker is down or unreachable. Not the consumer's fault.
    WaitingForBroker,
    /// A member with lag that received nothing, for this long.
    Stalled { lag: i64, for_: Duration },
    /// Held back by the messages it is handling: not asking Kafka for more.
    Busy,
    /// Out of its group or stalled for `stuck_after`: the bridge fails with this reason.
    Stuck { reason: StuckReason, detail: String },
}

/// Why a consumer was declared stuck (the label of its restart counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StuckReason {
    OutOfGroup,
    NoProgress,
}

impl StuckReason {
    pub fn label(self) -> &'static str {
        match self {
            StuckReason::OutOfGroup => "out_of_group",
            StuckReason::NoProgress => "no_progress",
        }
    }
}

impl Phase {
    /// One line for the tree snapshot and the observer page.
    pub fn describe(&self, seen: &Observed, now: Instant) -> String {
        let lag = seen
            .lag
            .map_or_else(|| "lag unknown".to_owned(), |lag| format!("lag {lag}"));
        let ago = |at: Option<Instant>| {
            at.map_or_else(
                || "never".to_owned(),
                |at| format!("{}s ago", now.saturating_duration_since(at).as_secs()),
            )
        };
        match self {
            Phase::Joined { partitions } => format!(
                "consumer joined: {partitions} partitions, {lag}, assigned {}",
                ago(seen.last_rebalance)
            ),
            Phase::Rebalancing { for_ } => format!(
                "consumer rebalancing for {}s, last commit {}",
                for_.as_secs(),
                ago(seen.last_commit)
            ),
            Phase::WaitingForBroker => "consumer waiting for the broker".to_owned(),
            Phase::Stalled { lag, for_ } => format!(
                "consumer lagging {lag} with no message for {}s",
                for_.as_secs()
            ),
            Phase::Busy => format!("consumer busy handling, {lag}"),
            Phase::Stuck { detail, .. } => format!("consumer stuck: {detail}"),
        }
    }
}

/// The watchdog's clocks: since when the consumer has been out of its group, and since when it
/// has been lagging without progress, counted only while the cluster answers and the consumer
/// is asked for messages.
pub(crate) struct Watchdog {
    stuck_after: Duration,
    out_of_group_since: Option<Instant>,
    stalled_since: Option<Instant>,
}

impl Watchdog {
    pub fn new(stuck_after: Duration) -> Self {
        Self {
            stuck_after,
            out_of_group_since: None,
            stalled_since: None,
        }
    }

    /// Whether the cluster must be asked before [`assess`](Self::assess) can judge: only when
    /// something looks wrong (asking costs a metadata request).
    pub fn needs_probe(&self, seen: &Observed, now: Instant) -> bool {
        seen.polling && (!seen.member(now) || seen.lagging(now))
    }

    /// Judges the consumer from what was observed and, when a probe was needed, whether the
    /// cluster answered it.
    pub fn assess(&mut self, seen: &Observed, now: Instant, cluster_answers: bool) -> Phase {
        if !seen.polling {
            // Held back by its own handling: a rebalance waits for the next poll by design.
            self.out_of_group_since = None;
            self.stalled_since = None;
            return Phase::Busy;
        }
        let member = seen.member(now);
        let lagging = member && seen.lagging(now);
        if (!member || lagging) && !cluster_answers {
            self.out_of_group_since = None;
            self.stalled_since = None;
            return Phase::WaitingForBroker;
        }
        if !member {
            self.stalled_since = None;
            let since = *self.out_of_group_since.get_or_insert(now);
            let out = now.saturating_duration_since(since);
            if out >= self.stuck_after {
                return Phase::Stuck {
                    reason: StuckReason::OutOfGroup,
                    detail: format!(
                        "not a member of its group for {}s while the cluster answers \
                         (group state {}, join state {})",
                        out.as_secs(),
                        or_unknown(&seen.group_state),
                        or_unknown(&seen.join_state),
                    ),
                };
            }
            return Phase::Rebalancing { for_: out };
        }
        self.out_of_group_since = None;
        if !lagging {
            self.stalled_since = None;
            return Phase::Joined {
                partitions: seen.assigned,
            };
        }
        let since = self.stalled_since.get_or_insert(now);
        // A message since the clock started is progress: start again from it.
        if let Some(message) = seen.last_message
            && message > *since
        {
            *since = message;
        }
        let stalled = now.saturating_duration_since(*since);
        let lag = seen.lag.unwrap_or_default();
        if stalled >= self.stuck_after {
            return Phase::Stuck {
                reason: StuckReason::NoProgress,
                detail: format!(
                    "{lag} messages behind with none received for {}s while the cluster answers",
                    stalled.as_secs()
                ),
            };
        }
        if stalled < STALL_NOTICE {
            // Traffic keeps a reading consumer a few messages behind now and then.
            return Phase::Joined {
                partitions: seen.assigned,
            };
        }
        Phase::Stalled { lag, for_: stalled }
    }

    /// Since when the consumer last made progress: a message, or a moment it was a member with
    /// nothing left to read (for the `seconds since progress` gauge).
    pub fn progress_at(seen: &Observed, phase: &Phase, now: Instant) -> Instant {
        let caught_up = matches!(phase, Phase::Joined { .. }).then_some(now);
        [caught_up, seen.last_message, Some(seen.started)]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(now)
    }
}

/// When each group's consumers were last declared stuck, in this process (the restart budget).
static STUCK: std::sync::LazyLock<Mutex<HashMap<&'static str, Vec<Instant>>>> =
    std::sync::LazyLock::new(Default::default);

/// Records that the consumer of `group` was declared stuck now.
pub(crate) fn record_stuck(group: &'static str) {
    STUCK
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(group)
        .or_default()
        .push(Instant::now());
}

/// How often the consumer of `group` was declared stuck within `window`.
pub(crate) fn stuck_within(group: &'static str, window: Duration) -> usize {
    let mut stuck = STUCK.lock().unwrap_or_else(PoisonError::into_inner);
    let Some(times) = stuck.get_mut(group) else {
        return 0;
    };
    times.retain(|at| at.elapsed() < window);
    times.len()
}

fn or_unknown(state: &str) -> &str {
    if state.is_empty() { "unknown" } else { state }
}

#[cfg(test)]
#[path = "health_tests.rs"]
mod tests;
