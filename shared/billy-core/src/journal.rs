//! The typed journal entries of invoices, the folds that rebuild an invoice and an account from
//! them, the account balance ("who owes how much and why"), and the check that stored state equals
//! replayed state.

use crate::audit::AuditEvent;
use crate::error::{DomainError, DomainResult};
use crate::ids::Id;
use crate::invoice::{Adjustment, Invoice, InvoiceAction, InvoiceItem, InvoiceStatus};
use crate::money::{Currency, checked_sum};
use crate::plan::Direction;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// One change of one invoice, as journaled. Replaying them in order rebuilds the invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum InvoiceChange {
    Created {
        invoice: Box<Invoice>,
    },
    ItemsAdded {
        items: Vec<InvoiceItem>,
    },
    AdjustmentAdded {
        adjustment: Adjustment,
    },
    /// A refund asked of the gateway: its amount is held until the gateway answers.
    RefundRequested {
        amount: i64,
        at: DateTime<Utc>,
    },
    /// A refund the gateway refused: its amount is refundable again.
    RefundReleased {
        amount: i64,
        at: DateTime<Utc>,
    },
    Transitioned {
        action: InvoiceAction,
        from: InvoiceStatus,
        to: InvoiceStatus,
        at: DateTime<Utc>,
        reason: Option<String>,
        next_attempt_at: Option<DateTime<Utc>>,
        /// Refunds only: the amount the gateway confirmed.
        amount: Option<i64>,
    },
}

impl InvoiceChange {
    /// Applies this change to the state so far, with the same domain rules as the live path.
    pub fn apply(&self, state: Option<Invoice>) -> DomainResult<Invoice> {
        let replay_error = |m: &str| DomainError::unexpected(format!("invoice replay: {m}"));
        match (self, state) {
            (Self::Created { invoice }, None) => Ok((**invoice).clone()),
            (Self::Created { .. }, Some(_)) => Err(replay_error("created twice")),
            (_, None) => Err(replay_error("change before creation")),
            (Self::ItemsAdded { items }, Some(mut inv)) => {
                inv.add_items(items.clone())?;
                Ok(inv)
            }
            (Self::AdjustmentAdded { adjustment }, Some(mut inv)) => {
                inv.add_adjustment(adjustment.clone())?;
                Ok(inv)
            }
            (Self::RefundRequested { amount, .. }, Some(mut inv)) => {
                inv.reserve_refund(*amount)?;
                Ok(inv)
            }
            (Self::RefundReleased { amount, .. }, Some(mut inv)) => {
                inv.release_refund(*amount)?;
                Ok(inv)
            }
            (Self::Transitioned { action, from, to, at, reason, next_attempt_at, amount }, Some(mut inv)) => {
                if inv.status != *from {
                    return Err(replay_error(&format!(
                        "expected {} before {}, found {}",
                        from.as_str(),
                        action.as_str(),
                        inv.status.as_str()
                    )));
                }
                match (action, amount) {
                    (InvoiceAction::Fail, _) => {
                        inv.fail(reason.as_deref().unwrap_or("unknown"), *next_attempt_at, *at)?;
                    }
                    (InvoiceAction::RefundFull | InvoiceAction::RefundPartial, Some(amount)) => {
                        inv.refund(*amount, *at)?;
                    }
                    _ => {
                        inv.apply(*action, *at)?;
                    }
                }
                if inv.status != *to {
                    return Err(replay_error(&format!(
                        "{} led to {}, journal says {}",
                        action.as_str(),
                        inv.status.as_str(),
                        to.as_str()
                    )));
                }
                Ok(inv)
            }
        }
    }
}

/// Reserves a refund on a live invoice (within the tenant's window) and returns the amount and
/// the journal entry that replays it.
pub fn request_refund(
    inv: &mut Invoice,
    amount: Option<i64>,
    policy: crate::invoice::RefundPolicy,
    at: DateTime<Utc>,
) -> DomainResult<(i64, InvoiceChange)> {
    let amount = inv.request_refund(amount, policy, at)?;
    Ok((amount, InvoiceChange::RefundRequested { amount, at }))
}

/// Releases a refused refund on a live invoice and returns the journal entry that replays it.
pub fn release_refund(inv: &mut Invoice, amount: i64, at: DateTime<Utc>) -> DomainResult<InvoiceChange> {
    inv.release_refund(amount)?;
    Ok(InvoiceChange::RefundReleased { amount, at })
}

/// Records a transition on a live invoice and returns the journal entry that replays it.
pub fn transition(inv: &mut Invoice, action: InvoiceAction, at: DateTime<Utc>) -> DomainResult<InvoiceChange> {
    let from = inv.apply(action, at)?;
    Ok(InvoiceChange::Transitioned {
        action,
        from,
        to: inv.status,
        at,
        reason: None,
        next_attempt_at: None,
        amount: None,
    })
}

/// Records a failed attempt (reason and next retry) and returns its journal entry.
pub fn fail(
    inv: &mut Invoice,
    reason: &str,
    next_attempt_at: Option<DateTime<Utc>>,
    at: DateTime<Utc>,
) -> DomainResult<InvoiceChange> {
    let from = inv.fail(reason, next_attempt_at, at)?;
    Ok(InvoiceChange::Transitioned {
        action: InvoiceAction::Fail,
        from,
        to: inv.status,
        at,
        reason: Some(reason.to_owned()),
        next_attempt_at,
        amount: None,
    })
}

/// Records a confirmed refund and returns its journal entry.
pub fn refund(inv: &mut Invoice, amount: i64, at: DateTime<Utc>) -> DomainResult<InvoiceChange> {
    let before = inv.status;
    inv.refund(amount, at)?;
    let action =
        if inv.status == InvoiceStatus::Refunded { InvoiceAction::RefundFull } else { InvoiceAction::RefundPartial };
    Ok(InvoiceChange::Transitioned {
        action,
        from: before,
        to: inv.status,
        at,
        reason: None,
        next_attempt_at: None,
        amount: Some(amount),
    })
}

fn change_of(event: &AuditEvent) -> DomainResult<Option<InvoiceChange>> {
    match (&event.entity_type[..], &event.change) {
        ("invoice", Some(value)) => serde_json::from_value(value.clone())
            .map(Some)
            .map_err(|e| DomainError::unexpected(format!("audit event {} has an unreadable change: {e}", event.id))),
        _ => Ok(None),
    }
}

/// Rebuilds one invoice from its journal (events of that invoice, oldest first).
pub fn fold_invoice(events: &[AuditEvent]) -> DomainResult<Option<Invoice>> {
    let mut state = None;
    for event in events {
        if let Some(change) = change_of(event)? {
            state = Some(change.apply(state)?);
        }
    }
    Ok(state)
}

/// One difference between stored and replayed state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mismatch {
    pub entity: String,
    pub field: String,
    pub stored: String,
    pub replayed: String,
}

/// Compares a stored invoice with its replay, field by field, reporting every difference.
pub fn verify_invoice(stored: &Invoice, events: &[AuditEvent]) -> DomainResult<Vec<Mismatch>> {
    let Some(replayed) = fold_invoice(events)? else {
        return Ok(vec![Mismatch {
            entity: stored.id.to_string(),
            field: "*".into(),
            stored: "present".into(),
            replayed: "no events".into(),
        }]);
    };
    let (a, b) = (
        serde_json::to_value(stored).map_err(DomainError::unexpected)?,
        serde_json::to_value(&replayed).map_err(DomainError::unexpected)?,
    );
    let mut out = Vec::new();
    if let (Some(a), Some(b)) = (a.as_object(), b.as_object()) {
        for (field, value) in a {
            let other = b.get(field).cloned().unwrap_or_default();
            if *value != other {
                out.push(Mismatch {
                    entity: stored.id.to_string(),
                    field: field.clone(),
                    stored: value.to_string(),
                    replayed: other.to_string(),
                });
            }
        }
    }
    Ok(out)
}

/// One line of an account's history that moved its balance, with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BalanceLine {
    pub at: DateTime<Utc>,
    pub event: Id,
    pub invoice: Id,
    pub currency: Currency,
    pub description: String,
    /// Change of what the customer owes (positive: owes more).
    pub receivable: i64,
    /// Change of what is owed to the customer (payouts).
    pub payable: i64,
}

/// Totals per currency.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CurrencyBalance {
    /// What the customer owes now: finalized debit invoices not yet paid, voided or written off.
    pub receivable: i64,
    /// What Billy owes the customer now: finalized payouts not yet paid out or voided.
    pub payable: i64,
    pub invoiced: i64,
    pub paid: i64,
    pub refunded: i64,
    pub written_off: i64,
    pub charged_back: i64,
    pub paid_out: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AccountBalance {
    pub currencies: BTreeMap<Currency, CurrencyBalance>,
    pub lines: Vec<BalanceLine>,
}

/// Time order across entities, and version order within each entity: several changes can share
/// an instant (an invoice created, itemised and finalized in one step), so each entity's events
/// are put back in version order in the places that entity holds in the time order.
fn journal_order(events: &[AuditEvent]) -> Vec<&AuditEvent> {
    let mut ordered: Vec<&AuditEvent> = events.iter().collect();
    ordered.sort_by_key(|e| e.at);
    let mut by_entity: BTreeMap<&Id, Vec<&AuditEvent>> = BTreeMap::new();
    for e in &ordered {
        by_entity.entry(&e.entity).or_default().push(e);
    }
    for versions in by_entity.values_mut() {
        versions.sort_by_key(|e| std::cmp::Reverse(e.version));
    }
    ordered.iter().map(|e| by_entity.get_mut(&e.entity).and_then(Vec::pop).unwrap_or(e)).collect()
}

/// Folds an account's events (oldest first) into its balance and the lines that explain it.
pub fn fold_account(events: &[AuditEvent]) -> DomainResult<AccountBalance> {
    let ordered = journal_order(events);
    let mut invoices: BTreeMap<Id, Invoice> = BTreeMap::new();
    let mut balance = AccountBalance::default();
    for event in ordered {
        let Some(change) = change_of(event)? else {
            continue;
        };
        let state = invoices.remove(&event.entity);
        let before_total = state.as_ref().map_or(0, |i| i.total);
        let next = change.apply(state)?;
        if let InvoiceChange::Transitioned { action, from, amount, at, .. } = &change {
            let totals = balance.currencies.entry(next.currency).or_default();
            let t = before_total;
            let (receivable, payable, description) = match (next.direction, action, from) {
                (Direction::Debit, InvoiceAction::Finalize, _) if t > 0 => (t, 0, "invoice finalized"),
                (Direction::Debit, InvoiceAction::Succeed, _) => (-t, 0, "payment received"),
                (Direction::Debit, InvoiceAction::Cancel, InvoiceStatus::Pending | InvoiceStatus::ChargedWithError) => {
                    (-t, 0, "invoice voided")
                }
                (Direction::Debit, InvoiceAction::GiveUp, _) => (-t, 0, "written off as uncollectible"),
                (Direction::Debit, InvoiceAction::Defer, _) if t > 0 => (t, 0, "invoice in the monthly settlement"),
                (Direction::Debit, InvoiceAction::Settle, _) => (-t, 0, "netted in the monthly settlement"),
                (Direction::Payout, InvoiceAction::Defer, _) if t > 0 => (0, t, "payout in the monthly settlement"),
                (Direction::Payout, InvoiceAction::Settle, _) => (0, -t, "netted in the monthly settlement"),
                (Direction::Payout, InvoiceAction::Finalize, _) if t > 0 => (0, t, "payout finalized"),
                (Direction::Payout, InvoiceAction::Succeed, _) => (0, -t, "paid out"),
                (Direction::Payout, InvoiceAction::Cancel, InvoiceStatus::Pending | InvoiceStatus::PayoutFailed) => {
                    (0, -t, "payout voided")
                }
                _ => (0, 0, ""),
            };
            match (next.direction, action) {
                // (A netted month is invoiced once, by its net invoice.)
                (Direction::Debit, InvoiceAction::Finalize) => totals.invoiced = checked_sum([totals.invoiced, t])?,
                (Direction::Debit, InvoiceAction::Succeed) => totals.paid = checked_sum([totals.paid, t])?,
                (Direction::Debit, InvoiceAction::GiveUp) => totals.written_off = checked_sum([totals.written_off, t])?,
                (Direction::Debit, InvoiceAction::RefundFull | InvoiceAction::RefundPartial) => {
                    totals.refunded = checked_sum([totals.refunded, amount.unwrap_or(0)])?;
                }
                (Direction::Debit, InvoiceAction::DisputeLost) => {
                    totals.charged_back = checked_sum([totals.charged_back, next.amount_paid])?
                }
                (Direction::Payout, InvoiceAction::Succeed) => totals.paid_out = checked_sum([totals.paid_out, t])?,
                _ => {}
            }
            totals.receivable = checked_sum([totals.receivable, receivable])?;
            totals.payable = checked_sum([totals.payable, payable])?;
            let description = match (description, action) {
                ("", InvoiceAction::RefundFull | InvoiceAction::RefundPartial) => {
                    format!("refunded {}", amount.unwrap_or(0))
                }
                ("", InvoiceAction::DisputeLost) => "chargeback: dispute lost".to_owned(),
                ("", _) => String::new(),
                (d, _) => d.to_owned(),
            };
            if !description.is_empty() {
                balance.lines.push(BalanceLine {
                    at: *at,
                    event: event.id.clone(),
                    invoice: next.id.clone(),
                    currency: next.currency,
                    description,
                    receivable,
                    payable,
                });
            }
        }
        invoices.insert(next.id.clone(), next);
    }
    Ok(balance)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Actor, Change, Context};
    use crate::clock::FixedClock;
    use crate::ids::{IdGenerator, IdKind, RandomIds};
    use crate::tenant::{Mode, Scope};
    use chrono::{Duration, TimeZone};
    use proptest::prelude::*;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 1, 0, 0, 0).unwrap()
    }

    struct Journal {
        ids: RandomIds<FixedClock>,
        ctx: Context,
        events: Vec<AuditEvent>,
    }

    impl Journal {
        fn new() -> Self {
            Self {
                ids: RandomIds::new(FixedClock::new(t0())),
                ctx: Context::new(
                    Scope::new(Id::from_trusted("ten_1".into()), Mode::Test),
                    Actor::System { function: "test".into() },
                    None,
                ),
                events: Vec::new(),
            }
        }

        fn record(&mut self, inv: &Invoice, change: InvoiceChange) {
            let event = self.ctx.record(
                &self.ids,
                t0(),
                Change {
                    entity: &inv.id,
                    entity_type: "invoice",
                    account: Some(&inv.customer),
                    action: "invoice.changed",
                    version: inv.version,
                    reason: None,
                    before: None,
                    after: Some(inv),
                    change: Some(serde_json::to_value(&change).unwrap()),
                },
            );
            self.events.push(event);
        }
    }

    fn new_invoice(j: &mut Journal, direction: Direction, amount: i64) -> Invoice {
        let mut inv = Invoice::draft(
            j.ids.next(IdKind::Invoice),
            Id::from_trusted("cus_1".into()),
            None,
            direction,
            Currency::parse("usd", "c").unwrap(),
            None,
            t0(),
            false,
        );
        j.record(&inv, InvoiceChange::Created { invoice: Box::new(inv.clone()) });
        let items = vec![InvoiceItem::new("Plan", 1, amount).unwrap()];
        inv.add_items(items.clone()).unwrap();
        j.record(&inv, InvoiceChange::ItemsAdded { items });
        inv
    }

    #[test]
    fn an_account_balance_explains_who_owes_how_much_and_why() {
        // GIVEN a 30.00 invoice paid, a 10.00 invoice unpaid, a 5.00 invoice written off, and a
        // 7.00 payout paid out; with 12.00 of the first refunded
        let mut j = Journal::new();
        let mut paid = new_invoice(&mut j, Direction::Debit, 3000);
        let mut open = new_invoice(&mut j, Direction::Debit, 1000);
        let mut bad = new_invoice(&mut j, Direction::Debit, 500);
        let mut payout = new_invoice(&mut j, Direction::Payout, 700);
        for (inv, actions) in [
            (&mut paid, vec![InvoiceAction::Finalize, InvoiceAction::Succeed]),
            (&mut open, vec![InvoiceAction::Finalize]),
            (&mut bad, vec![InvoiceAction::Finalize]),
            (&mut payout, vec![InvoiceAction::Finalize, InvoiceAction::Succeed]),
        ] {
            for a in actions {
                let c = transition(inv, a, t0()).unwrap();
                j.record(inv, c);
            }
        }
        let c = fail(&mut bad, "card_declined", None, t0()).unwrap();
        j.record(&bad, c);
        let c = transition(&mut bad, InvoiceAction::GiveUp, t0()).unwrap();
        j.record(&bad, c);
        let c = refund(&mut paid, 1200, t0() + Duration::days(1)).unwrap();
        j.record(&paid, c);
        // WHEN the account is folded
        let balance = fold_account(&j.events).unwrap();
        let usd = &balance.currencies[&Currency::parse("usd", "c").unwrap()];
        // THEN the customer owes 10.00 (30 + 10 + 5 invoiced − 30 paid − 5 written off)
        assert_eq!(usd.receivable, 1000);
        assert_eq!((usd.invoiced, usd.paid, usd.written_off, usd.refunded), (4500, 3000, 500, 1200));
        // AND nothing is owed to the customer after the payout went out
        assert_eq!((usd.payable, usd.paid_out), (0, 700));
        // AND every movement has a line with its reason
        let why: Vec<&str> = balance.lines.iter().map(|l| l.description.as_str()).collect();
        assert_eq!(
            why,
            vec![
                "invoice finalized",
                "payment received",
                "invoice finalized",
                "invoice finalized",
                "payout finalized",
                "paid out",
                "written off as uncollectible",
                "refunded 1200",
            ]
        );
        assert_eq!(balance.lines.iter().map(|l| l.receivable).sum::<i64>(), usd.receivable);
    }

    #[test]
    fn same_instant_events_fold_in_version_order_whatever_order_they_are_read_in() {
        // GIVEN an invoice created, itemised and finalized in one instant, read back newest first
        let mut j = Journal::new();
        let mut inv = new_invoice(&mut j, Direction::Debit, 700);
        let c = transition(&mut inv, InvoiceAction::Finalize, t0()).unwrap();
        j.record(&inv, c);
        j.events.reverse();
        // WHEN folded THEN the customer owes the 7.00
        let balance = fold_account(&j.events).unwrap();
        assert_eq!(balance.currencies[&Currency::parse("usd", "c").unwrap()].receivable, 700);
    }

    #[test]
    fn verification_reports_every_field_where_stored_state_differs_from_the_journal() {
        let mut j = Journal::new();
        let mut inv = new_invoice(&mut j, Direction::Debit, 1000);
        let c = transition(&mut inv, InvoiceAction::Finalize, t0()).unwrap();
        j.record(&inv, c);
        assert_eq!(verify_invoice(&inv, &j.events).unwrap(), vec![]);
        // WHEN the stored invoice is tampered with (paid without a journaled payment)
        let mut tampered = inv.clone();
        tampered.status = InvoiceStatus::Paid;
        tampered.amount_paid = 1000;
        let mismatches = verify_invoice(&tampered, &j.events).unwrap();
        let fields: Vec<&str> = mismatches.iter().map(|m| m.field.as_str()).collect();
        assert_eq!(fields, vec!["amount_paid", "status"]);
    }

    #[test]
    fn a_journal_that_skips_a_step_does_not_replay() {
        let mut j = Journal::new();
        let mut inv = new_invoice(&mut j, Direction::Debit, 1000);
        transition(&mut inv, InvoiceAction::Finalize, t0()).unwrap();
        let c = transition(&mut inv, InvoiceAction::Succeed, t0()).unwrap();
        j.record(&inv, c); // the finalize entry is missing
        assert!(fold_invoice(&j.events).is_err());
    }

    fn any_action() -> impl Strategy<Value = (u8, i64)> {
        (0u8..12, 1i64..5000)
    }

    proptest! {
        #[test]
        fn replaying_any_legal_sequence_gives_the_stored_state(
            payout in any::<bool>(),
            amount in 0i64..100_000,
            steps in proptest::collection::vec(any_action(), 0..30),
        ) {
            let mut j = Journal::new();
            let direction = if payout { Direction::Payout } else { Direction::Debit };
            let mut inv = new_invoice(&mut j, direction, amount);
            for (i, (pick, value)) in steps.into_iter().enumerate() {
                let at = t0() + Duration::hours(i64::try_from(i).unwrap());
                let attempt = match pick {
                    0 => transition(&mut inv, InvoiceAction::Finalize, at),
                    1 => transition(&mut inv, InvoiceAction::Succeed, at),
                    2 => fail(&mut inv, "card_declined", Some(at + Duration::days(3)), at),
                    3 => transition(&mut inv, InvoiceAction::Retry, at),
                    4 => transition(&mut inv, InvoiceAction::GiveUp, at),
                    5 => transition(&mut inv, InvoiceAction::Cancel, at),
                    6 => {
                        let refundable = (inv.amount_paid - inv.amount_refunded).max(1);
                        refund(&mut inv, value.min(refundable), at)
                    }
                    7 => transition(&mut inv, InvoiceAction::Contest, at),
                    8 => transition(&mut inv, InvoiceAction::DisputeWon, at),
                    9 => transition(&mut inv, InvoiceAction::DisputeLost, at),
                    10 => {
                        let items = vec![InvoiceItem::new("Extra", 1, value).unwrap()];
                        inv.add_items(items.clone()).map(|()| InvoiceChange::ItemsAdded { items })
                    }
                    _ => {
                        let adjustment = Adjustment { kind: crate::invoice::AdjustmentKind::Discount, amount: -value, reason: "promo".into() };
                        inv.add_adjustment(adjustment.clone()).map(|()| InvoiceChange::AdjustmentAdded { adjustment })
                    }
                };
                // Illegal steps are rejected and leave no journal entry, as in the live path.
                if let Ok(change) = attempt {
                    j.record(&inv, change);
                }
            }
            let replayed = fold_invoice(&j.events).unwrap().unwrap();
            prop_assert_eq!(&replayed, &inv);
            prop_assert!(verify_invoice(&inv, &j.events).unwrap().is_empty());
            prop_assert!(inv.amount_refunded <= inv.amount_paid);
            prop_assert!(direction == Direction::Payout || inv.total >= 0);
        }
    }
}
