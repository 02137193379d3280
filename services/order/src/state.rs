//! The order's life, in one table: which command moves which state where. Everything else (the
//! actor, the HTTP handlers, the event handlers) asks [`next`] and never decides on its own.
//!
//! ```text
//! pending ──pay──────────▶ paid ──ship──▶ shipped ──deliver──▶ delivered
//!    │                       │
//!    ├─cancel / payment      └─cancel──▶ cancelled ──refund──▶ refunded
//!    │  failed / expire                  (a paid order's cancel leads to a refund)
//!    ▼
//! cancelled
//! ```

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Pending,
    Paid,
    Shipped,
    Delivered,
    Cancelled,
    Refunded,
}

/// What can happen to an order, and who may make it happen is decided by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    /// The payment service charged the order (`PaymentSucceeded`).
    Pay,
    /// The payment service could not charge it (`PaymentFailed`).
    FailPayment,
    /// The customer or an admin calls it off.
    Cancel,
    /// The order's own timer: still unpaid after the grace period.
    Expire,
    /// An admin sends it.
    Ship,
    /// An admin records its arrival.
    Deliver,
    /// The payment service paid the money back (`PaymentRefunded`).
    Refund,
}

pub const STATES: [State; 6] = [
    State::Pending,
    State::Paid,
    State::Shipped,
    State::Delivered,
    State::Cancelled,
    State::Refunded,
];

pub const COMMANDS: [Command; 7] = [
    Command::Pay,
    Command::FailPayment,
    Command::Cancel,
    Command::Expire,
    Command::Ship,
    Command::Deliver,
    Command::Refund,
];

/// The state `command` moves `state` to, or `None` when it may not happen in `state`.
pub fn next(state: State, command: Command) -> Option<State> {
    use Command::*;
    use State::*;
    match (state, command) {
        (Pending, Pay) => Some(Paid),
        (Pending, FailPayment | Cancel | Expire) => Some(Cancelled),
        (Paid, Cancel) => Some(Cancelled),
        (Paid, Ship) => Some(Shipped),
        (Shipped, Deliver) => Some(Delivered),
        (Cancelled, Refund) => Some(Refunded),
        _ => None,
    }
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Paid => "paid",
            State::Shipped => "shipped",
            State::Delivered => "delivered",
            State::Cancelled => "cancelled",
            State::Refunded => "refunded",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        STATES.into_iter().find(|state| state.as_str() == text)
    }

    /// Nothing the order's actor waits for any more: it may stop.
    pub fn is_settled(self) -> bool {
        !matches!(self, State::Pending | State::Paid | State::Shipped)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Pay => "pay",
            Command::FailPayment => "fail payment",
            Command::Cancel => "cancel",
            Command::Expire => "expire",
            Command::Ship => "ship",
            Command::Deliver => "deliver",
            Command::Refund => "refund",
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every (state, command) pair, written out: a change to the table must change this too.
    #[test]
    fn every_state_and_command_pair() {
        use Command::*;
        use State::*;
        let allowed = [
            (Pending, Pay, Paid),
            (Pending, FailPayment, Cancelled),
            (Pending, Cancel, Cancelled),
            (Pending, Expire, Cancelled),
            (Paid, Cancel, Cancelled),
            (Paid, Ship, Shipped),
            (Shipped, Deliver, Delivered),
            (Cancelled, Refund, Refunded),
        ];
        let mut checked = 0;
        for state in STATES {
            for command in COMMANDS {
                let expected = allowed
                    .iter()
                    .find(|(from, by, _)| *from == state && *by == command)
                    .map(|(_, _, to)| *to);
                assert_eq!(next(state, command), expected, "{state} + {command}");
                checked += 1;
            }
        }
        assert_eq!(checked, 42);
    }

    #[test]
    fn no_command_leaves_a_final_state() {
        for state in [State::Delivered, State::Refunded] {
            for command in COMMANDS {
                assert_eq!(next(state, command), None, "{state} + {command}");
            }
        }
    }

    #[test]
    fn states_read_back_from_their_names() {
        for state in STATES {
            assert_eq!(State::parse(state.as_str()), Some(state));
        }
        assert_eq!(State::parse("lost"), None);
    }
}
