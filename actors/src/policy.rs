//! What a supervisor does when a child stops: the restart policy of each child, the backoff before
//! a restart, and the restart intensity of the supervisor as a whole.

use std::time::Duration;

use ractor_supervisor::ChildBackoffFn;
use serde::{Deserialize, Serialize};

/// When a child is restarted. The same three policies as Erlang/OTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Restart {
    /// Always restarted, whether it failed or stopped normally (servers, relays, pools).
    Permanent,
    /// Restarted only when it failed (a panic or an error); a normal stop is final.
    Transient,
    /// Never restarted.
    Temporary,
}

impl From<Restart> for ractor_supervisor::Restart {
    fn from(restart: Restart) -> Self {
        match restart {
            Restart::Permanent => ractor_supervisor::Restart::Permanent,
            Restart::Transient => ractor_supervisor::Restart::Transient,
            Restart::Temporary => ractor_supervisor::Restart::Temporary,
        }
    }
}

/// At most `max_restarts` restarts within `within`; one more and the supervisor gives up and
/// fails, which escalates the failure to its own parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Intensity {
    pub max_restarts: usize,
    #[serde(with = "duration_secs")]
    pub within: Duration,
}

impl Intensity {
    pub const fn new(max_restarts: usize, within: Duration) -> Self {
        Self {
            max_restarts,
            within,
        }
    }
}

impl Default for Intensity {
    /// OTP's default is 1 restart in 5 s; services restart more readily than that because a
    /// restart here is cheap and most failures are a dependency blinking.
    fn default() -> Self {
        Self::new(5, Duration::from_secs(30))
    }
}

/// How long a supervisor waits before restarting a child that keeps failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Backoff {
    /// Restart at once.
    None,
    /// Restart at once the first time, then wait `first`, doubling on every further failure up to
    /// `max`.
    Exponential {
        #[serde(with = "duration_secs")]
        first: Duration,
        #[serde(with = "duration_secs")]
        max: Duration,
    },
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::Exponential {
            first: Duration::from_millis(100),
            max: Duration::from_secs(5),
        }
    }
}

impl Backoff {
    /// The delay before restart number `restart` (1 for the first restart).
    pub fn delay(&self, restart: usize) -> Option<Duration> {
        match *self {
            Backoff::None => None,
            Backoff::Exponential { .. } if restart <= 1 => None,
            Backoff::Exponential { first, max } => {
                let doublings = u32::try_from(restart - 2).unwrap_or(u32::MAX).min(20);
                Some(first.saturating_mul(1 << doublings).min(max))
            }
        }
    }

    pub(crate) fn to_backoff_fn(self) -> Option<ChildBackoffFn> {
        match self {
            Backoff::None => None,
            backoff => Some(ChildBackoffFn::new(move |_id, restart, _last, _reset| {
                backoff.delay(restart)
            })),
        }
    }
}

mod duration_secs {
    use serde::Serializer;
    use std::time::Duration;

    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(duration.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_backoff_restarts_at_once_then_doubles_up_to_the_cap() {
        let backoff = Backoff::Exponential {
            first: Duration::from_millis(100),
            max: Duration::from_millis(500),
        };
        let delays: Vec<_> = (1..=6).map(|n| backoff.delay(n)).collect();
        assert_eq!(
            delays,
            vec![
                None,
                Some(Duration::from_millis(100)),
                Some(Duration::from_millis(200)),
                Some(Duration::from_millis(400)),
                Some(Duration::from_millis(500)),
                Some(Duration::from_millis(500)),
            ]
        );
    }

    #[test]
    fn no_backoff_never_waits() {
        assert_eq!(Backoff::None.delay(7), None);
    }
}
