//! The domain events Billy announces, each with its one wire name. An audit event whose action is
//! one of these is published from the audit table's stream (the transactional outbox), under the
//! audit event's own id, so whatever committed is announced at least once and never twice under
//! different ids. Every other audit action stays in the journal only.

use serde::{Deserialize, Serialize};

macro_rules! event_types {
    ($($variant:ident => $wire:literal),+ $(,)?) => {
        /// A published domain event type.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum EventType {
            $(#[serde(rename = $wire)] $variant,)+
        }

        impl EventType {
            pub const ALL: &'static [EventType] = &[$(EventType::$variant,)+];

            pub const fn as_str(self) -> &'static str {
                match self {
                    $(EventType::$variant => $wire,)+
                }
            }

            /// The event type an audit action announces, if it is published at all.
            pub fn from_action(action: &str) -> Option<Self> {
                match action {
                    $($wire => Some(EventType::$variant),)+
                    _ => None,
                }
            }
        }
    };
}

event_types! {
    CustomerCreated => "customer.created",
    PaymentMethodCreated => "payment_method.created",
    SubscriptionCreated => "subscription.created",
    SubscriptionTrialWillEnd => "subscription.trial_will_end",
    SubscriptionTrialEnded => "subscription.trial_ended",
    SubscriptionCancelScheduled => "subscription.cancel_scheduled",
    SubscriptionCanceled => "subscription.canceled",
    SubscriptionPastDue => "subscription.past_due",
    SubscriptionRecovered => "subscription.recovered",
    SubscriptionEnded => "subscription.ended",
    SubscriptionEnding => "subscription.ending",
    SubscriptionChangeScheduled => "subscription.change_scheduled",
    SubscriptionChangeWithdrawn => "subscription.change_withdrawn",
    SubscriptionPlanChanged => "subscription.plan_changed",
    CreditGranted => "credit.granted",
    CreditPurchased => "credit.purchased",
    InvoiceUpcoming => "invoice.upcoming",
    InvoiceCreated => "invoice.created",
    InvoiceFinalized => "invoice.finalized",
    InvoicePaid => "invoice.paid",
    InvoicePaymentFailed => "invoice.payment_failed",
    InvoiceUncollectible => "invoice.uncollectible",
    InvoiceCanceled => "invoice.canceled",
    InvoiceRefundRequested => "invoice.refund_requested",
    InvoicePartiallyRefunded => "invoice.partially_refunded",
    InvoiceRefunded => "invoice.refunded",
    InvoiceRefundFailed => "invoice.refund_failed",
    InvoiceDisputed => "invoice.disputed",
    InvoiceDisputeWon => "invoice.dispute_won",
    InvoiceChargedBack => "invoice.charged_back",
    PayoutPaid => "payout.paid",
    PayoutFailed => "payout.failed",
    PayoutRetryScheduled => "payout.retry_scheduled",
    TestClockAdvanced => "test_clock.advanced",
    ExportCreated => "export.created",
    ExportSucceeded => "export.succeeded",
    VerificationCreated => "verification.created",
    VerificationSucceeded => "verification.succeeded",
    VerificationFailed => "verification.failed",
}

impl std::fmt::Display for EventType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_type_round_trips_through_its_wire_name() {
        for t in EventType::ALL {
            assert_eq!(EventType::from_action(t.as_str()), Some(*t));
            assert_eq!(serde_json::to_value(t).unwrap(), serde_json::json!(t.as_str()));
        }
        // journal-only actions are not announced
        assert_eq!(EventType::from_action("subscription.period_billed"), None);
        assert_eq!(EventType::from_action("transaction.requested"), None);
    }
}
