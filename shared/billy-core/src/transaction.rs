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
    /// The gateway's answer was lost (a timeout after sending, a 5xx): settled later by the
    /// gateway's webhook or by a look-up, never by sending the request again.
    Unknown,
    Succeeded,
    Failed,
    Canceled,
}

impl TransactionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Unknown => "unknown",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }

    /// Still waiting for the gateway's outcome.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Pending | Self::Unknown)
    }
}

use TransactionStatus as T;

/// Only an open transaction moves; every outcome is final (a later dispute is a new transaction).
pub const TRANSACTION_TRANSITIONS: &[(TransactionStatus, TransactionStatus)] = &[
    (T::Pending, T::Succeeded),
    (T::Pending, T::Failed),
    (T::Pending, T::Canceled),
    (T::Pending, T::Unknown),
    (T::Unknown, T::Succeeded),
    (T::Unknown, T::Failed),
    (T::Unknown, T::Canceled),
];

/// An unknown outcome is first looked up this long after its attempt (the gateway's webhook
/// usually settles it before).
pub const RECHECK_AFTER_MINUTES: i64 = 5;
/// A gateway that still has no record of a movement this long after it was sent never got it:
/// the attempt failed (`gateway_no_record`) and dunning may make the next one.
pub const NO_RECORD_AFTER_MINUTES: i64 = 60;

/// The most of an invoice's item descriptions a transaction keeps for the ledger's search, in bytes.
pub const MAX_ITEMS_TEXT: usize = 2000;

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
    /// The invoice's test clock, if any: its advances drive the look-up of an unknown outcome.
    #[serde(default)]
    pub test_clock: Option<Id>,
    /// Every gateway that could take this attempt refused it before processing (nothing moved), so
    /// the same attempt may be sent again; without this mark a redelivered attempt is never resent.
    #[serde(default)]
    pub unsent: bool,
    /// A failed charge or payout whose invoice will make another attempt (dunning).
    #[serde(default)]
    pub retryable: bool,
    /// Lowercased descriptions of the invoice's items, so the ledger can be searched by item.
    #[serde(default)]
    pub items: String,
    /// When the attempt was made (on a test clock, the attempt's own scheduled time).
    pub created: DateTime<Utc>,
    pub livemode: bool,
    pub version: u64,
}

impl Transaction {
    /// A new pending attempt of `kind` on `inv`, made at `at` (on a test clock, the attempt's own
    /// scheduled time).
    pub fn for_invoice(
        id: Id,
        inv: &crate::invoice::Invoice,
        kind: TransactionType,
        attempt: u32,
        amount: i64,
        at: DateTime<Utc>,
    ) -> Self {
        let mut items: String = inv.items.iter().map(|i| i.description.to_lowercase()).collect::<Vec<_>>().join("\n");
        // At most MAX_ITEMS_TEXT bytes, cut at a character's boundary.
        let cut = (0..=items.len().min(MAX_ITEMS_TEXT)).rev().find(|i| items.is_char_boundary(*i)).unwrap_or(0);
        items.truncate(cut);
        Self {
            id,
            invoice: inv.id.clone(),
            customer: inv.customer.clone(),
            kind,
            status: TransactionStatus::Pending,
            amount,
            currency: inv.currency,
            gateway: String::new(),
            gateway_reference: None,
            failure_reason: None,
            attempt,
            idempotency_key: Self::idempotency_key_for(&inv.id, kind, attempt),
            last_event_at: None,
            test_clock: inv.test_clock.clone(),
            unsent: false,
            retryable: false,
            items,
            created: at,
            livemode: inv.livemode,
            version: 1,
        }
    }

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

    /// The gateway's answer was lost: the transaction waits for its webhook or a look-up.
    pub fn mark_unknown(&mut self, gateway: &str, reason: &str) -> DomainResult<()> {
        if !TRANSACTION_TRANSITIONS.contains(&(self.status, T::Unknown)) {
            return Err(DomainError::IllegalTransition {
                entity: "transaction",
                from: self.status.as_str().into(),
                action: "become unknown".into(),
            });
        }
        self.status = T::Unknown;
        self.gateway = gateway.to_owned();
        self.failure_reason = Some(reason.to_owned());
        self.version += 1;
        Ok(())
    }

    /// When an unknown outcome is next looked up at the gateway.
    pub fn recheck_at(&self) -> Option<DateTime<Utc>> {
        (self.status == T::Unknown).then(|| self.created + chrono::Duration::minutes(RECHECK_AFTER_MINUTES))
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
            test_clock: None,
            unsent: false,
            retryable: false,
            items: String::new(),
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

    #[test]
    fn each_applied_outcome_is_a_new_version_and_events_of_the_same_second_both_apply() {
        // Gateways stamp events in whole seconds: "unknown" then "succeeded" in one second both
        // apply, and each moves the version the store's conditional write checks.
        let at = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 10).unwrap();
        let mut t = txn();
        assert!(t.settle(T::Unknown, at, Some("timed out")).unwrap());
        assert_eq!(t.version, 2);
        assert!(t.settle(T::Succeeded, at, None).unwrap());
        assert_eq!((t.status, t.version, t.failure_reason.clone()), (T::Succeeded, 3, None));
        // and a lost answer marked unknown is a new version too
        let mut lost = txn();
        lost.mark_unknown("adyen", "timed out after sending").unwrap();
        assert_eq!((lost.version, lost.gateway.as_str()), (2, "adyen"), "and names the gateway it went to");
    }

    #[test]
    fn the_ledger_keeps_the_first_2000_bytes_of_item_descriptions_whole_characters_only() {
        use crate::invoice::{Invoice, InvoiceItem};
        let created = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let invoice = |descriptions: Vec<String>| {
            let items = descriptions.iter().map(|d| InvoiceItem::new(d, 1, 100).unwrap()).collect();
            crate::invoice::test_draft(crate::plan::Direction::Debit, Currency::parse("usd", "c").unwrap(), created)
                .with_items(items)
                .unwrap()
        };
        let txn_of = |inv: &Invoice| {
            Transaction::for_invoice(Id::from_trusted("txn_1".into()), inv, TransactionType::Charge, 1, 100, created)
        };
        // short descriptions are kept whole, lowercased, one per line
        let short = txn_of(&invoice(vec!["Seat".into(), "Setup FEE".into()]));
        assert_eq!(short.items, "seat\nsetup fee");
        // three lines of 400 two-byte letters (2,402 bytes) keep their first 2,000 bytes
        let e = |n: usize| "é".repeat(n);
        let long = txn_of(&invoice(vec![e(400), e(400), e(400)]));
        assert_eq!(long.items, format!("{}\n{}\n{}", e(400), e(400), e(199)));
        assert_eq!(long.items.len(), MAX_ITEMS_TEXT);
        // a cut that would split a letter falls back to the boundary before it (1,999 bytes)
        let odd = txn_of(&invoice(vec![format!("x{}", e(399)), e(400), e(400)]));
        assert_eq!(odd.items, format!("x{}\n{}\n{}", e(399), e(400), e(199)));
    }

    #[test]
    fn an_unknown_outcome_is_settled_by_a_later_event_and_rechecked_after_five_minutes() {
        let at = |s: u32| Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, s).unwrap();
        let mut t = txn();
        assert_eq!(t.recheck_at(), None);
        t.mark_unknown("sandbox", "timed out after sending").unwrap();
        assert_eq!((t.status, t.recheck_at()), (T::Unknown, Some(t.created + chrono::Duration::minutes(5))));
        assert!(t.status.is_open());
        // a second "unknown" is not a transition
        assert!(t.clone().mark_unknown("sandbox", "again").is_err());
        assert!(t.settle(T::Succeeded, at(30), None).unwrap());
        assert_eq!((t.status, t.recheck_at()), (T::Succeeded, None));
        assert!(!t.status.is_open(), "a final outcome waits for nothing");
        assert!(t.mark_unknown("sandbox", "late").is_err());
    }
}
