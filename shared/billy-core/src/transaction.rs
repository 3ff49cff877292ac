//! Transactions: every attempt to move money (charge, refund, payout, chargeback) and its lifecycle.

use crate::error::{DomainError, DomainResult};
use crate::ids::Id;
use crate::money::Currency;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionType {
    Charge,
    Refund,
    Payout,
    Chargeback,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionStatus {
    Pending,
    Succeeded,
    Failed,
    Canceled,
}

impl TransactionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }
}

use TransactionStatus as T;

/// Only a pending transaction moves; every outcome is final (a later dispute is a new transaction).
pub const TRANSACTION_TRANSITIONS: &[(TransactionStatus, TransactionStatus)] =
    &[(T::Pending, T::Succeeded), (T::Pending, T::Failed), (T::Pending, T::Canceled)];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    pub id: Id,
    pub invoice: Id,
    pub customer: Id,
    #[serde(rename = "type")]
    pub kind: TransactionType,
    pub status: TransactionStatus,
    pub amount: i64,
    pub currency: Currency,
    pub gateway: String,
    pub gateway_reference: Option<String>,
    pub failure_reason: Option<String>,
    pub attempt: u32,
    /// Sent with every gateway call for this attempt, so a retried step can never move money twice.
    pub idempotency_key: String,
    /// The gateway time of the last event applied; older events are journaled but not applied.
    pub last_event_at: Option<DateTime<Utc>>,
    pub created: DateTime<Utc>,
    pub livemode: bool,
    pub version: u64,
}

impl Transaction {
    /// The idempotency key of attempt `attempt` of `kind` on `invoice`: stable across redeliveries.
    pub fn idempotency_key_for(invoice: &Id, kind: TransactionType, attempt: u32) -> String {
        format!("billy-{invoice}-{kind:?}-{attempt}").to_lowercase()
    }

    /// Applies a gateway outcome observed at `event_at`. Returns `Ok(false)` (and changes nothing)
    /// when the event is older than the last one applied: it is journaled but not applied.
    pub fn settle(
        &mut self,
        to: TransactionStatus,
        event_at: DateTime<Utc>,
        reason: Option<&str>,
    ) -> DomainResult<bool> {
        if self.last_event_at.is_some_and(|last| event_at < last) {
            return Ok(false);
        }
        if !TRANSACTION_TRANSITIONS.contains(&(self.status, to)) {
            return Err(DomainError::IllegalTransition {
                entity: "transaction",
                from: self.status.as_str().into(),
                action: format!("become {}", to.as_str()),
            });
        }
        self.status = to;
        self.failure_reason = reason.map(str::to_owned);
        self.last_event_at = Some(event_at);
        self.version += 1;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn txn() -> Transaction {
        Transaction {
            id: Id::from_trusted("txn_1".into()),
            invoice: Id::from_trusted("inv_1".into()),
            customer: Id::from_trusted("cus_1".into()),
            kind: TransactionType::Charge,
            status: T::Pending,
            amount: 1000,
            currency: Currency::parse("usd", "c").unwrap(),
            gateway: "sandbox".into(),
            gateway_reference: None,
            failure_reason: None,
            attempt: 1,
            idempotency_key: Transaction::idempotency_key_for(
                &Id::from_trusted("inv_1".into()),
                TransactionType::Charge,
                1,
            ),
            last_event_at: None,
            created: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            livemode: false,
            version: 1,
        }
    }

    #[test]
    fn idempotency_keys_are_stable_per_attempt_and_differ_between_attempts() {
        let inv = Id::from_trusted("inv_1".into());
        assert_eq!(Transaction::idempotency_key_for(&inv, TransactionType::Charge, 1), "billy-inv_1-charge-1");
        assert_ne!(
            Transaction::idempotency_key_for(&inv, TransactionType::Charge, 1),
            Transaction::idempotency_key_for(&inv, TransactionType::Charge, 2)
        );
    }

    #[test]
    fn outcomes_are_final_and_stale_events_do_not_apply() {
        let at = |s: u32| Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, s).unwrap();
        let mut t = txn();
        assert!(t.settle(T::Succeeded, at(10), None).unwrap());
        // an older "failed" event arriving late is not applied
        let before = t.clone();
        assert!(!t.settle(T::Failed, at(5), Some("card_declined")).unwrap());
        assert_eq!(t, before);
        // a newer event cannot reopen a final outcome
        assert!(matches!(t.settle(T::Failed, at(20), None), Err(DomainError::IllegalTransition { .. })));
        assert_eq!(t, before);
    }
}
