//! A customer's credit balance (the pre-bill model: credit granted or bought ahead is used by the
//! next invoices before anything is charged). The balance, per currency, only ever moves by a
//! movement, each its own journaled record: granted, bought (when its invoice is paid), left over
//! from a downgrade, or used by an invoice.

use crate::error::{DomainError, DomainResult};
use crate::ids::Id;
use crate::invoice::{Adjustment, AdjustmentKind, Invoice};
use crate::money::{Currency, validate_amount};
use crate::plan::Direction;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MovementKind {
    /// Given by the tenant (a goodwill credit, a migration).
    Granted,
    /// Bought by the customer: counted once its invoice is paid.
    Purchased,
    /// What a downgrade's proration left over (never a negative invoice).
    Proration,
    /// Used by an invoice, before charging it.
    Applied,
}

/// One change of a balance: positive adds credit, negative uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditMovement {
    pub id: Id,
    pub customer: Id,
    pub currency: Currency,
    pub amount: i64,
    pub kind: MovementKind,
    pub reason: String,
    /// The invoice that used it, bought it, or whose proration left it.
    pub invoice: Option<Id>,
    pub created: DateTime<Utc>,
    pub livemode: bool,
}

/// The credit a customer holds in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditBalance {
    pub customer: Id,
    pub currency: Currency,
    pub amount: i64,
}

/// A grant as the tenant gives it: checked before anything is written.
pub fn validate_grant(amount: i64, reason: &str) -> DomainResult<()> {
    validate_amount(amount, "amount")?;
    if amount == 0 {
        return Err(DomainError::invalid("amount_invalid", "a credit is more than zero", Some("amount")));
    }
    if reason.chars().count() > 500 {
        return Err(DomainError::invalid("parameter_invalid", "reason is at most 500 characters", Some("reason")));
    }
    Ok(())
}

/// Uses up to `available` credit on a draft debit invoice, after its discounts: a credit line of
/// the amount used (never more than the total left). `None` when nothing is used.
pub fn use_credit(inv: &mut Invoice, available: i64) -> DomainResult<Option<i64>> {
    if inv.direction != Direction::Debit || available <= 0 || inv.total <= 0 {
        return Ok(None);
    }
    let used = available.min(inv.total);
    inv.add_adjustment(Adjustment {
        kind: AdjustmentKind::Credit,
        amount: -used,
        reason: "customer credit balance".into(),
    })?;
    Ok(Some(used))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invoice::InvoiceItem;
    use chrono::TimeZone;

    fn draft(total: i64, direction: Direction) -> Invoice {
        let at = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        crate::invoice::test_draft(direction, Currency::parse("usd", "c").unwrap(), at)
            .with_items(vec![InvoiceItem::new("Seat", 1, total).unwrap()])
            .unwrap()
    }

    #[test]
    fn credit_covers_what_it_can_and_never_makes_a_total_negative() {
        // more credit than the invoice: the invoice is covered whole, the rest stays
        let mut inv = draft(1500, Direction::Debit);
        assert_eq!(use_credit(&mut inv, 2000).unwrap(), Some(1500));
        assert_eq!(inv.total, 0);
        // less: the rest is charged
        let mut inv = draft(1500, Direction::Debit);
        assert_eq!(use_credit(&mut inv, 400).unwrap(), Some(400));
        assert_eq!((inv.total, inv.adjustments[0].amount), (1100, -400));
        // none, or a payout invoice: nothing used
        assert_eq!(use_credit(&mut draft(1500, Direction::Debit), 0).unwrap(), None);
        assert_eq!(use_credit(&mut draft(1500, Direction::Payout), 900).unwrap(), None);
    }

    #[test]
    fn a_grant_is_a_positive_bounded_amount() {
        assert!(validate_grant(0, "").is_err());
        assert!(validate_grant(-5, "").is_err());
        assert!(validate_grant(500, "welcome").is_ok());
    }

    #[test]
    fn a_grant_reason_is_at_most_500_characters() {
        // counted in characters, not bytes: 500 accented letters are 1,000 bytes and still fit
        assert!(validate_grant(500, &"é".repeat(500)).is_ok());
        let err = validate_grant(500, &"é".repeat(501)).unwrap_err();
        assert!(matches!(err, DomainError::Invalid { code: "parameter_invalid", param: Some(p), .. } if p == "reason"));
    }
}
