//! A payment's life, after Stripe's PaymentIntent: which outcome moves which status where. The
//! actor asks [`next`] and never decides on its own.
//!
//! ```text
//! requires_payment_method ──attempt──▶ processing ──succeed──▶ succeeded ──refund all──▶ refunded
//!          │                            │  ▲  │                  (partial refunds stay succeeded,
//!          │                            └──┘  └──decline──▶ failed     tracked by amount)
//!          │                        retry after a
//!          │                        transient error
//!          └──────────cancel (the order was cancelled first)──────────▶ canceled
//!                     (or its payment window ended before the first attempt)
//! ```

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Recorded, not yet sent to the provider.
    RequiresPaymentMethod,
    /// Sent to the provider; the outcome is not known yet.
    Processing,
    Succeeded,
    /// Declined, or refused by the provider for good.
    Failed,
    /// The order was cancelled before the charge went through, or its payment window ended
    /// before the charge started.
    Canceled,
    /// Everything charged was paid back.
    Refunded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// A charge request goes (again) to the provider.
    Attempt,
    Succeed,
    Decline,
    Cancel,
    /// Refunds now cover the whole amount.
    RefundAll,
}

pub const STATUSES: [Status; 6] = [
    Status::RequiresPaymentMethod,
    Status::Processing,
    Status::Succeeded,
    Status::Failed,
    Status::Canceled,
    Status::Refunded,
];

pub const OUTCOMES: [Outcome; 5] = [
    Outcome::Attempt,
    Outcome::Succeed,
    Outcome::Decline,
    Outcome::Cancel,
    Outcome::RefundAll,
];

/// The status `outcome` moves `status` to, or `None` when it cannot happen in `status`.
pub fn next(status: Status, outcome: Outcome) -> Option<Status> {
    use Outcome::*;
    use Status::*;
    match (status, outcome) {
        (RequiresPaymentMethod | Processing, Attempt) => Some(Processing),
        (Processing, Succeed) => Some(Succeeded),
        (Processing, Decline) => Some(Failed),
        (RequiresPaymentMethod | Processing, Cancel) => Some(Canceled),
        (Succeeded, RefundAll) => Some(Refunded),
        _ => None,
    }
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::RequiresPaymentMethod => "requires_payment_method",
            Status::Processing => "processing",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Canceled => "canceled",
            Status::Refunded => "refunded",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        STATUSES.into_iter().find(|status| status.as_str() == text)
    }

    /// The charge's outcome is not known yet.
    pub fn is_open(self) -> bool {
        matches!(self, Status::RequiresPaymentMethod | Status::Processing)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transition_table_is_written_out_in_full() {
        use Outcome::*;
        use Status::*;
        let expected = [
            (RequiresPaymentMethod, Attempt, Some(Processing)),
            (RequiresPaymentMethod, Succeed, None),
            (RequiresPaymentMethod, Decline, None),
            (RequiresPaymentMethod, Cancel, Some(Canceled)),
            (RequiresPaymentMethod, RefundAll, None),
            (Processing, Attempt, Some(Processing)),
            (Processing, Succeed, Some(Succeeded)),
            (Processing, Decline, Some(Failed)),
            (Processing, Cancel, Some(Canceled)),
            (Processing, RefundAll, None),
            (Succeeded, Attempt, None),
            (Succeeded, Succeed, None),
            (Succeeded, Decline, None),
            (Succeeded, Cancel, None),
            (Succeeded, RefundAll, Some(Refunded)),
            (Failed, Attempt, None),
            (Failed, Succeed, None),
            (Failed, Decline, None),
            (Failed, Cancel, None),
            (Failed, RefundAll, None),
            (Canceled, Attempt, None),
            (Canceled, Succeed, None),
            (Canceled, Decline, None),
            (Canceled, Cancel, None),
            (Canceled, RefundAll, None),
            (Refunded, Attempt, None),
            (Refunded, Succeed, None),
            (Refunded, Decline, None),
            (Refunded, Cancel, None),
            (Refunded, RefundAll, None),
        ];
        assert_eq!(expected.len(), STATUSES.len() * OUTCOMES.len());
        for (status, outcome, to) in expected {
            assert_eq!(next(status, outcome), to, "{status} on {outcome:?}");
        }
    }

    #[test]
    fn every_status_reads_back_from_its_name() {
        for status in STATUSES {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
        assert_eq!(Status::parse("paid"), None);
    }
}
