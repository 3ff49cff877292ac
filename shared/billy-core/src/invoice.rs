//! Invoices: items and adjustments with checked totals, and the debit and payout lifecycles as
//! explicit transition tables. An illegal transition is a typed error and changes nothing.

use crate::error::{DomainError, DomainResult};
use crate::ids::Id;
use crate::money::{Currency, checked_product, checked_sum, round_minor, validate_amount};
use crate::plan::Direction;
use crate::schedule::Period;
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceStatus {
    Draft,
    Pending,
    Paid,
    ChargedWithError,
    Failed,
    Canceled,
    Refunded,
    PartiallyRefunded,
    InProtest,
    Chargeback,
    PaidOut,
    PayoutFailed,
    /// Finalized into its customer's monthly settlement (tenants on `monthly_net`): not charged
    /// or paid out on its own, and no longer cancelable (its month's net may be moving; a
    /// correction goes on the net invoice, by refund or credit).
    InSettlement,
    /// Netted in a closed monthly settlement, whose own invoice moves the net.
    Settled,
}

impl InvoiceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Pending => "pending",
            Self::Paid => "paid",
            Self::ChargedWithError => "charged_with_error",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
            Self::Refunded => "refunded",
            Self::PartiallyRefunded => "partially_refunded",
            Self::InProtest => "in_protest",
            Self::Chargeback => "chargeback",
            Self::PaidOut => "paid_out",
            Self::PayoutFailed => "payout_failed",
            Self::InSettlement => "in_settlement",
            Self::Settled => "settled",
        }
    }
}

/// What can happen to an invoice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceAction {
    /// Draft → pending (a charge or payout is requested), or straight to paid when the total is 0.
    Finalize,
    /// The gateway confirmed the money moved.
    Succeed,
    /// The gateway reported a failure.
    Fail,
    /// The dunning policy retries.
    Retry,
    /// The dunning policy is exhausted: uncollectible.
    GiveUp,
    Cancel,
    /// A refund confirmed by the gateway, for part of what was paid.
    RefundPartial,
    /// A refund confirmed by the gateway that brings the refunded sum to the amount paid.
    RefundFull,
    Contest,
    DisputeWon,
    DisputeLost,
    /// Draft → in_settlement: finalized into the month's settlement instead of being collected.
    Defer,
    /// In_settlement → settled: its month's settlement closed with it.
    Settle,
    /// A payout that failed for good is tried once more, now (asked for by the tenant, e.g. after
    /// the customer gave a new destination): its next attempt is scheduled at once.
    Reschedule,
}

impl InvoiceAction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Finalize => "finalize",
            Self::Succeed => "succeed",
            Self::Fail => "fail",
            Self::Retry => "retry",
            Self::GiveUp => "give_up",
            Self::Cancel => "cancel",
            Self::RefundPartial => "refund_partial",
            Self::RefundFull => "refund_full",
            Self::Contest => "contest",
            Self::DisputeWon => "dispute_won",
            Self::DisputeLost => "dispute_lost",
            Self::Defer => "defer",
            Self::Settle => "settle",
            Self::Reschedule => "reschedule",
        }
    }
}

use InvoiceAction as A;
use InvoiceStatus as S;

/// Every legal debit transition; anything not listed is illegal.
pub const DEBIT_TRANSITIONS: &[(InvoiceStatus, InvoiceAction, InvoiceStatus)] = &[
    (S::Draft, A::Finalize, S::Pending),
    (S::Draft, A::Cancel, S::Canceled),
    (S::Pending, A::Succeed, S::Paid),
    (S::Pending, A::Fail, S::ChargedWithError),
    (S::Pending, A::Cancel, S::Canceled),
    (S::ChargedWithError, A::Retry, S::Pending),
    (S::ChargedWithError, A::Succeed, S::Paid),
    (S::ChargedWithError, A::GiveUp, S::Failed),
    (S::ChargedWithError, A::Cancel, S::Canceled),
    (S::Paid, A::RefundPartial, S::PartiallyRefunded),
    (S::Paid, A::RefundFull, S::Refunded),
    (S::PartiallyRefunded, A::RefundPartial, S::PartiallyRefunded),
    (S::PartiallyRefunded, A::RefundFull, S::Refunded),
    (S::Paid, A::Contest, S::InProtest),
    (S::InProtest, A::DisputeWon, S::Paid),
    (S::InProtest, A::DisputeLost, S::Chargeback),
    (S::Draft, A::Defer, S::InSettlement),
    (S::InSettlement, A::Settle, S::Settled),
];

/// Every legal payout transition.
pub const PAYOUT_TRANSITIONS: &[(InvoiceStatus, InvoiceAction, InvoiceStatus)] = &[
    (S::Draft, A::Finalize, S::Pending),
    (S::Draft, A::Cancel, S::Canceled),
    (S::Pending, A::Succeed, S::PaidOut),
    (S::Pending, A::Fail, S::PayoutFailed),
    (S::Pending, A::Cancel, S::Canceled),
    (S::PayoutFailed, A::Retry, S::Pending),
    (S::PayoutFailed, A::Cancel, S::Canceled),
    (S::PayoutFailed, A::Reschedule, S::PayoutFailed),
    (S::Draft, A::Defer, S::InSettlement),
    (S::InSettlement, A::Settle, S::Settled),
];

pub fn transition(direction: Direction, from: InvoiceStatus, action: InvoiceAction) -> DomainResult<InvoiceStatus> {
    let table = match direction {
        Direction::Debit => DEBIT_TRANSITIONS,
        Direction::Payout => PAYOUT_TRANSITIONS,
    };
    table.iter().find(|(f, a, _)| *f == from && *a == action).map(|(_, _, to)| *to).ok_or_else(|| {
        DomainError::IllegalTransition {
            entity: "invoice",
            from: from.as_str().to_owned(),
            action: action.as_str().to_owned(),
        }
    })
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceItem {
    pub description: String,
    pub quantity: i64,
    pub unit_amount: i64,
    /// A fractional unit price (metered plans); `amount` is then `quantity × this`, rounded once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_amount_decimal: Option<Decimal>,
    /// A metered quantity with a fraction (kWh, GB): `quantity` is then this rounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantity_decimal: Option<Decimal>,
    /// The metric a usage line prices (its events are listed by `GET /v1/usage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<String>,
    pub amount: i64,
}

impl InvoiceItem {
    /// An item as a client gives it: `amount = quantity × unit_amount`, all bounded.
    pub fn new(description: &str, quantity: i64, unit_amount: i64) -> DomainResult<Self> {
        let description = description.trim();
        if description.is_empty() || description.chars().count() > 500 {
            return Err(DomainError::invalid(
                "parameter_invalid",
                "item description must be 1 to 500 characters",
                Some("items.description"),
            ));
        }
        if !(1..=1_000_000_000).contains(&quantity) {
            return Err(DomainError::invalid(
                "quantity_invalid",
                "item quantity must be from 1 to 1000000000",
                Some("items.quantity"),
            ));
        }
        validate_amount(unit_amount, "items.unit_amount")?;
        Ok(Self {
            description: description.to_owned(),
            quantity,
            unit_amount,
            unit_amount_decimal: None,
            quantity_decimal: None,
            metric: None,
            amount: checked_product(quantity, unit_amount)?,
        })
    }

    /// A usage line: a possibly fractional quantity at a possibly fractional unit price, plus a
    /// tier's flat amount, rounded once.
    pub fn metered(line: &crate::plan::PricedLine, metric: &str) -> DomainResult<Self> {
        let whole = crate::money::round_minor(line.quantity)?;
        Ok(Self {
            description: line.description.clone(),
            quantity: whole,
            unit_amount: round_minor(line.unit_amount)?,
            unit_amount_decimal: (line.unit_amount.fract() != Decimal::ZERO).then_some(line.unit_amount),
            quantity_decimal: (line.quantity.fract() != Decimal::ZERO).then_some(line.quantity),
            metric: Some(metric.to_owned()),
            amount: line.amount,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdjustmentKind {
    Discount,
    Credit,
    Proration,
    Commission,
    /// A monthly settlement's other side, netted against this invoice's items.
    Settlement,
}

/// A signed change to the total with its reason (a discount or credit is negative).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Adjustment {
    pub kind: AdjustmentKind,
    pub amount: i64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    pub id: Id,
    pub customer: Id,
    pub subscription: Option<Id>,
    pub direction: Direction,
    pub status: InvoiceStatus,
    pub currency: Currency,
    pub items: Vec<InvoiceItem>,
    pub adjustments: Vec<Adjustment>,
    pub total: i64,
    pub amount_paid: i64,
    pub amount_refunded: i64,
    /// Refunds requested and not yet confirmed (or refused) by the gateway: counted against what
    /// can still be refunded, so two refunds in flight can never add up to more than was paid.
    #[serde(default)]
    pub amount_refund_pending: i64,
    /// How many refunds were requested: each is its own transaction (its attempt number).
    #[serde(default)]
    pub refunds_requested: u32,
    pub period: Option<Period>,
    pub attempt_count: u32,
    /// The id of the transaction its current collection attempt makes, named when the attempt is
    /// counted (at finalization, at a retry): every step that makes, voids or looks up the attempt
    /// uses this id, so the transaction's own creation is the attempt's claim and no second
    /// transaction for it can exist. `None` on invoices whose attempt was counted before ids were
    /// named this way: theirs is found through its attempt claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_transaction: Option<Id>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When it was finalized: the time its first collection attempt is made.
    #[serde(default)]
    pub finalized_at: Option<DateTime<Utc>>,
    pub paid_at: Option<DateTime<Utc>>,
    pub failure_reason: Option<String>,
    /// The customer's test clock, if any: its advances drive this invoice's retries.
    pub test_clock: Option<Id>,
    /// Sells the customer credit: when it is paid, its total is added to their credit balance.
    #[serde(default)]
    pub credit_purchase: bool,
    /// A one-off invoice's coupon, applied to its items when it is finalized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coupon: Option<crate::coupon::Coupon>,
    /// The monthly settlement whose net this invoice moves (its own figures are that month's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settlement: Option<Id>,
    pub created: DateTime<Utc>,
    pub livemode: bool,
    pub version: u64,
}

/// The tenant's refund rule: how long after payment a refund may be requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundPolicy {
    pub window_days: u32,
}

impl Default for RefundPolicy {
    fn default() -> Self {
        Self { window_days: 7 }
    }
}

impl Invoice {
    #[allow(clippy::too_many_arguments)]
    pub fn draft(
        id: Id,
        customer: Id,
        subscription: Option<Id>,
        direction: Direction,
        currency: Currency,
        period: Option<Period>,
        created: DateTime<Utc>,
        livemode: bool,
    ) -> Self {
        Self {
            id,
            customer,
            subscription,
            direction,
            status: InvoiceStatus::Draft,
            currency,
            items: Vec::new(),
            adjustments: Vec::new(),
            total: 0,
            amount_paid: 0,
            amount_refunded: 0,
            amount_refund_pending: 0,
            refunds_requested: 0,
            period,
            attempt_count: 0,
            attempt_transaction: None,
            next_attempt_at: None,
            finalized_at: None,
            paid_at: None,
            failure_reason: None,
            test_clock: None,
            credit_purchase: false,
            coupon: None,
            settlement: None,
            created,
            livemode,
            version: 1,
        }
    }

    fn require_draft(&self, action: &str) -> DomainResult<()> {
        if self.status == InvoiceStatus::Draft {
            Ok(())
        } else {
            Err(DomainError::IllegalTransition {
                entity: "invoice",
                from: self.status.as_str().into(),
                action: action.into(),
            })
        }
    }

    /// Items + adjustments, checked; a debit invoice can never total below zero.
    fn computed_total(&self, items: &[InvoiceItem], adjustments: &[Adjustment]) -> DomainResult<i64> {
        let total = checked_sum(items.iter().map(|i| i.amount).chain(adjustments.iter().map(|a| a.amount)))?;
        if total < 0 {
            return Err(DomainError::invalid(
                "total_negative",
                "adjustments would make the invoice total negative",
                Some("adjustments"),
            ));
        }
        Ok(total)
    }

    /// A new draft's first items, part of its creation (no new version).
    pub fn with_items(mut self, items: Vec<InvoiceItem>) -> DomainResult<Self> {
        self.add_items(items)?;
        self.version = 1;
        Ok(self)
    }

    /// Adds items to a draft; all or nothing.
    pub fn add_items(&mut self, items: Vec<InvoiceItem>) -> DomainResult<()> {
        self.require_draft("add items to")?;
        if self.items.len() + items.len() > 250 {
            return Err(DomainError::invalid("too_many_items", "an invoice has at most 250 items", Some("items")));
        }
        let mut all = self.items.clone();
        all.extend(items);
        self.total = self.computed_total(&all, &self.adjustments)?;
        self.items = all;
        self.version += 1;
        Ok(())
    }

    /// Adds an adjustment to a draft; rejected if it would make the total negative.
    pub fn add_adjustment(&mut self, adjustment: Adjustment) -> DomainResult<()> {
        self.require_draft("adjust")?;
        let mut all = self.adjustments.clone();
        all.push(adjustment);
        self.total = self.computed_total(&self.items, &all)?;
        self.adjustments = all;
        self.version += 1;
        Ok(())
    }

    /// Applies `action`, returning the status before. The invoice is unchanged on error.
    pub fn apply(&mut self, action: InvoiceAction, at: DateTime<Utc>) -> DomainResult<InvoiceStatus> {
        let from = self.status;
        let mut to = transition(self.direction, from, action)?;
        if matches!(action, A::Finalize | A::Defer) {
            self.finalized_at = Some(at);
        }
        match action {
            // A zero total needs no gateway: it is settled at once.
            A::Finalize if self.total == 0 => {
                to = match self.direction {
                    Direction::Debit => S::Paid,
                    Direction::Payout => S::PaidOut,
                };
                self.paid_at = Some(at);
            }
            A::Finalize | A::Retry => {
                self.attempt_count += 1;
                self.attempt_transaction = Some(self.attempt_id(at));
            }
            A::Succeed => {
                self.amount_paid = self.total;
                self.paid_at = Some(at);
                self.failure_reason = None;
                self.next_attempt_at = None;
            }
            A::GiveUp | A::Cancel => self.next_attempt_at = None,
            A::Reschedule => {
                if self.next_attempt_at.is_some() {
                    return Err(DomainError::conflict(
                        "retry_scheduled",
                        "a retry of this payout is already scheduled",
                    ));
                }
                self.next_attempt_at = Some(at);
            }
            _ => {}
        }
        self.status = to;
        self.version += 1;
        Ok(from)
    }

    /// Waiting for a dunning retry (charge or payout) that has a time.
    pub fn awaiting_retry(&self) -> bool {
        matches!(self.status, S::ChargedWithError | S::PayoutFailed) && self.next_attempt_at.is_some()
    }

    /// A dunning retry is due at or before `now`.
    pub fn retry_due(&self, now: DateTime<Utc>) -> bool {
        self.awaiting_retry() && self.next_attempt_at.is_some_and(|t| t <= now)
    }

    /// When collection attempt `attempt` is scheduled: the first at finalization, a retry when
    /// dunning set it. On a test clock every step runs at this, its own time.
    pub fn attempt_time(&self, attempt: u32) -> Option<DateTime<Utc>> {
        // (A retry keeps `next_attempt_at` while it runs, so a redelivered retry finds its time.)
        match attempt {
            0 => None,
            1 => self.finalized_at.or(Some(self.created)),
            _ => self.next_attempt_at,
        }
    }

    /// The transaction id of the attempt counted at `at`: the attempt's time and a hash of the
    /// invoice and the attempt's number, so a step computed again names the same transaction.
    fn attempt_id(&self, at: DateTime<Utc>) -> Id {
        let seed = format!("{}:attempt:{}", self.id, self.attempt_count);
        Id::derived(crate::ids::IdKind::Transaction, at, &seed)
    }

    /// The kind of transaction that collects (or pays out) this invoice.
    pub fn transaction_type(&self) -> crate::transaction::TransactionType {
        match self.direction {
            Direction::Debit => crate::transaction::TransactionType::Charge,
            Direction::Payout => crate::transaction::TransactionType::Payout,
        }
    }

    /// Records a failed attempt with its reason and when the next one is due (if any).
    pub fn fail(
        &mut self,
        reason: &str,
        next_attempt_at: Option<DateTime<Utc>>,
        at: DateTime<Utc>,
    ) -> DomainResult<InvoiceStatus> {
        let from = self.apply(A::Fail, at)?;
        self.failure_reason = Some(reason.to_owned());
        self.next_attempt_at = next_attempt_at;
        Ok(from)
    }

    /// What can still be refunded: paid, less refunded, less refunds in flight.
    pub fn refundable(&self) -> i64 {
        self.amount_paid - self.amount_refunded - self.amount_refund_pending
    }

    fn require_refundable(&self) -> DomainResult<()> {
        if matches!(self.status, S::Paid | S::PartiallyRefunded) {
            Ok(())
        } else {
            Err(DomainError::IllegalTransition {
                entity: "invoice",
                from: self.status.as_str().into(),
                action: "refund".into(),
            })
        }
    }

    /// Reserves a refund of `amount` (the whole refundable rest when `None`) within the refund
    /// window; the window is checked when a refund is requested, not when the gateway confirms
    /// it. Returns the amount reserved. The invoice is unchanged on error.
    pub fn request_refund(
        &mut self,
        amount: Option<i64>,
        policy: RefundPolicy,
        at: DateTime<Utc>,
    ) -> DomainResult<i64> {
        self.require_refundable()?;
        let paid_at = self.paid_at.ok_or_else(|| DomainError::unexpected("paid invoice without paid_at"))?;
        if at > paid_at + Duration::days(i64::from(policy.window_days)) {
            return Err(DomainError::invalid(
                "refund_window_expired",
                format!("refunds are possible for {} days after payment", policy.window_days),
                Some("amount"),
            ));
        }
        let amount = amount.unwrap_or_else(|| self.refundable());
        self.reserve_refund(amount)?;
        Ok(amount)
    }

    /// Reserves `amount` against what is still refundable (also what replay does).
    pub fn reserve_refund(&mut self, amount: i64) -> DomainResult<()> {
        self.require_refundable()?;
        let refundable = self.refundable();
        if amount <= 0 || amount > refundable {
            return Err(DomainError::invalid(
                "refund_amount_invalid",
                format!(
                    "refund amount must be from 1 to {refundable} (paid {}, refunded {}, refunds in flight {})",
                    self.amount_paid, self.amount_refunded, self.amount_refund_pending
                ),
                Some("amount"),
            ));
        }
        self.amount_refund_pending += amount;
        self.refunds_requested += 1;
        self.version += 1;
        Ok(())
    }

    /// A refund the gateway refused: its amount is refundable again.
    pub fn release_refund(&mut self, amount: i64) -> DomainResult<()> {
        if amount <= 0 || amount > self.amount_refund_pending {
            return Err(DomainError::unexpected(format!(
                "releasing {amount} of {} pending refunds",
                self.amount_refund_pending
            )));
        }
        self.amount_refund_pending -= amount;
        self.version += 1;
        Ok(())
    }

    /// Applies a gateway-confirmed refund of `amount`: partially refunded, or refunded when the
    /// refunds reach the amount paid; the sum refunded never passes the amount paid.
    pub fn refund(&mut self, amount: i64, at: DateTime<Utc>) -> DomainResult<InvoiceStatus> {
        self.require_refundable()?;
        let left = self.amount_paid - self.amount_refunded;
        if amount <= 0 || amount > left {
            return Err(DomainError::invalid(
                "refund_amount_invalid",
                format!("a refund of {amount} passes what is left of the payment ({left})"),
                Some("amount"),
            ));
        }
        let action = if amount == left { A::RefundFull } else { A::RefundPartial };
        let from = self.apply(action, at)?;
        self.amount_refunded += amount;
        self.amount_refund_pending -= amount.min(self.amount_refund_pending);
        Ok(from)
    }
}

/// A test draft: `inv_1` of customer `cus_1`, no subscription or period, test mode.
#[cfg(test)]
pub(crate) fn test_draft(direction: Direction, currency: Currency, created: DateTime<Utc>) -> Invoice {
    Invoice::draft(
        Id::from_trusted("inv_1".into()),
        Id::from_trusted("cus_1".into()),
        None,
        direction,
        currency,
        None,
        created,
        false,
    )
}

/// Proration of an immediate plan change, to the second: a credit for the unused part of the old
/// price and a charge for the remaining part of the new one. The net is rounded once, from the
/// difference itself, so the two lines always add up to the exact prorated difference (10.00 →
/// 20.00 halfway through nets +5.00); the credit is rounded once and the charge is credit + net.
pub fn prorate_change(
    old_amount: i64,
    new_amount: i64,
    period: &Period,
    at: DateTime<Utc>,
) -> DomainResult<(Adjustment, Adjustment)> {
    if at < period.start || at >= period.end {
        return Err(DomainError::invalid(
            "proration_invalid",
            "the change time must fall inside the current period",
            None,
        ));
    }
    let total = Decimal::from(period.seconds());
    let remaining = Decimal::from((period.end - at).num_seconds());
    let credit = round_minor(Decimal::from(old_amount) * remaining / total)?;
    let net = round_minor(Decimal::from(new_amount - old_amount) * remaining / total)?;
    let charge = credit + net;
    Ok((
        Adjustment {
            kind: AdjustmentKind::Proration,
            amount: -credit,
            reason: "unused time on the previous plan".into(),
        },
        Adjustment { kind: AdjustmentKind::Proration, amount: charge, reason: "remaining time on the new plan".into() },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const ALL_STATUSES: [InvoiceStatus; 14] = [
        S::Draft,
        S::Pending,
        S::Paid,
        S::ChargedWithError,
        S::Failed,
        S::Canceled,
        S::Refunded,
        S::PartiallyRefunded,
        S::InProtest,
        S::Chargeback,
        S::PaidOut,
        S::PayoutFailed,
        S::InSettlement,
        S::Settled,
    ];
    const ALL_ACTIONS: [InvoiceAction; 14] = [
        A::Finalize,
        A::Succeed,
        A::Fail,
        A::Retry,
        A::GiveUp,
        A::Cancel,
        A::RefundPartial,
        A::RefundFull,
        A::Contest,
        A::DisputeWon,
        A::DisputeLost,
        A::Defer,
        A::Settle,
        A::Reschedule,
    ];

    fn usd() -> Currency {
        Currency::parse("usd", "currency").unwrap()
    }

    fn t(d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, d, h, 0, 0).unwrap()
    }

    fn invoice(direction: Direction) -> Invoice {
        test_draft(direction, usd(), t(1, 0))
    }

    fn paid(total_each: i64) -> Invoice {
        let mut inv = invoice(Direction::Debit);
        inv.add_items(vec![InvoiceItem::new("Seat", 2, total_each).unwrap()]).unwrap();
        inv.apply(A::Finalize, t(1, 0)).unwrap();
        inv.apply(A::Succeed, t(1, 1)).unwrap();
        inv
    }

    #[test]
    fn totals_are_items_plus_adjustments() {
        // GIVEN 3 × 19.99 and 1 × 5.00, with a 10.00 discount
        let mut inv = invoice(Direction::Debit);
        inv.add_items(vec![InvoiceItem::new("Seat", 3, 1999).unwrap(), InvoiceItem::new("Setup", 1, 500).unwrap()])
            .unwrap();
        inv.add_adjustment(Adjustment { kind: AdjustmentKind::Discount, amount: -1000, reason: "welcome".into() })
            .unwrap();
        // THEN 5997 + 500 - 1000 = 5497
        assert_eq!(inv.items[0].amount, 5997);
        assert_eq!(inv.total, 5497);
    }

    #[test]
    fn a_debit_total_never_goes_negative() {
        let mut inv = invoice(Direction::Debit);
        inv.add_items(vec![InvoiceItem::new("Seat", 1, 500).unwrap()]).unwrap();
        let before = inv.clone();
        let err = inv
            .add_adjustment(Adjustment { kind: AdjustmentKind::Credit, amount: -501, reason: "x".into() })
            .unwrap_err();
        assert!(matches!(err, DomainError::Invalid { code: "total_negative", .. }));
        assert_eq!(inv, before, "nothing changed");
    }

    #[test]
    fn item_inputs_are_bounded() {
        assert!(InvoiceItem::new("", 1, 100).is_err());
        assert!(InvoiceItem::new("x", 0, 100).is_err());
        assert!(InvoiceItem::new("x", 1, -5).is_err());
        assert!(InvoiceItem::new("x", 1_000_000_000, 999_999_999_999).is_err(), "product overflows the bound");
    }

    #[test]
    fn a_zero_total_invoice_is_paid_at_finalization_without_a_gateway() {
        let mut inv = invoice(Direction::Debit);
        inv.add_items(vec![InvoiceItem::new("Free tier", 1, 0).unwrap()]).unwrap();
        inv.apply(A::Finalize, t(2, 0)).unwrap();
        assert_eq!(inv.status, S::Paid);
        assert_eq!(inv.attempt_count, 0, "no charge attempt");
        let mut payout = invoice(Direction::Payout);
        payout.apply(A::Finalize, t(2, 0)).unwrap();
        assert_eq!(payout.status, S::PaidOut);
    }

    #[test]
    fn the_debit_happy_path_and_dunning_path_follow_the_table() {
        let mut inv = invoice(Direction::Debit);
        inv.add_items(vec![InvoiceItem::new("Pro", 1, 1000).unwrap()]).unwrap();
        assert_eq!(inv.apply(A::Finalize, t(1, 0)).unwrap(), S::Draft);
        inv.fail("card_declined", Some(t(4, 0)), t(1, 1)).unwrap();
        assert_eq!((inv.status, inv.failure_reason.as_deref()), (S::ChargedWithError, Some("card_declined")));
        inv.apply(A::Retry, t(4, 0)).unwrap();
        assert_eq!((inv.status, inv.attempt_count), (S::Pending, 2));
        inv.apply(A::Succeed, t(4, 1)).unwrap();
        assert_eq!((inv.status, inv.amount_paid, inv.failure_reason.clone()), (S::Paid, 1000, None));
    }

    #[test]
    fn each_counted_attempt_names_its_own_transaction_the_same_way_every_time() {
        let mut inv = invoice(Direction::Debit);
        inv.add_items(vec![InvoiceItem::new("Pro", 1, 1000).unwrap()]).unwrap();
        assert_eq!(inv.attempt_transaction, None, "a draft has no attempt");
        let draft = inv.clone();
        inv.apply(A::Finalize, t(1, 0)).unwrap();
        let first = inv.attempt_transaction.clone().expect("the first attempt is named at finalization");
        // A step computed again from the same state names the same transaction.
        let mut again = draft.clone();
        again.apply(A::Finalize, t(1, 0)).unwrap();
        assert_eq!(again.attempt_transaction.as_ref(), Some(&first));
        assert!(first.as_str().starts_with("txn_"));
        assert!(first.as_str() >= crate::ids::time_floor(crate::ids::IdKind::Transaction, t(1, 0)).as_str());
        // A failure keeps it (the attempt was made); a retry names the next one.
        inv.fail("card_declined", Some(t(4, 0)), t(1, 1)).unwrap();
        assert_eq!(inv.attempt_transaction.as_ref(), Some(&first));
        inv.apply(A::Retry, t(4, 0)).unwrap();
        let second = inv.attempt_transaction.clone().unwrap();
        assert_ne!(second, first);
        // Another invoice's attempt of the same number at the same time is another transaction.
        let mut other = invoice(Direction::Debit);
        other.id = Id::from_trusted("in_other".into());
        other.add_items(vec![InvoiceItem::new("Pro", 1, 1000).unwrap()]).unwrap();
        other.apply(A::Finalize, t(1, 0)).unwrap();
        assert_ne!(other.attempt_transaction.as_ref(), Some(&first));
        // A zero total is settled at finalization: no attempt, no transaction named.
        let mut free = draft;
        free.items.clear();
        free.total = 0;
        free.apply(A::Finalize, t(1, 0)).unwrap();
        assert_eq!((free.attempt_count, free.attempt_transaction), (0, None));
    }

    #[test]
    fn illegal_transitions_are_typed_errors_that_change_nothing() {
        // Every (status, action) pair not in the table is rejected without change.
        for direction in [Direction::Debit, Direction::Payout] {
            let table = if direction == Direction::Debit { DEBIT_TRANSITIONS } else { PAYOUT_TRANSITIONS };
            for status in ALL_STATUSES {
                for action in ALL_ACTIONS {
                    let legal = table.iter().any(|(f, a, _)| *f == status && *a == action);
                    let mut inv = invoice(direction);
                    inv.add_items(vec![InvoiceItem::new("x", 1, 100).unwrap()]).unwrap();
                    inv.status = status;
                    let before = inv.clone();
                    let result = inv.apply(action, t(2, 0));
                    assert_eq!(result.is_ok(), legal, "{direction:?} {status:?} {action:?}");
                    if !legal {
                        assert!(matches!(result, Err(DomainError::IllegalTransition { .. })));
                        assert_eq!(inv, before);
                    }
                }
            }
        }
        // and a finalized invoice takes no more items
        let mut inv = paid(100);
        assert!(matches!(
            inv.add_items(vec![InvoiceItem::new("x", 1, 1).unwrap()]),
            Err(DomainError::IllegalTransition { .. })
        ));
    }

    #[test]
    fn statuses_and_actions_read_the_same_everywhere() {
        // The audit trail, the ledger's CSV and transition errors name a status or action as the
        // API's JSON does: a tenant filtering on `charged_with_error` finds what the trail says.
        for status in ALL_STATUSES {
            assert_eq!(serde_json::to_value(status).unwrap(), status.as_str(), "{status:?}");
        }
        for action in ALL_ACTIONS {
            assert_eq!(serde_json::to_value(action).unwrap(), action.as_str(), "{action:?}");
        }
        let mut inv = paid(100);
        let err = inv.apply(A::Retry, t(2, 0)).unwrap_err();
        assert!(
            matches!(&err, DomainError::IllegalTransition { from, action, .. } if from == "paid" && action == "retry"),
            "{err:?}"
        );
    }

    #[test]
    fn an_invoice_holds_at_most_250_items_however_they_are_added() {
        let items =
            |n: usize| (0..n).map(|i| InvoiceItem::new(&format!("Line {i}"), 1, 1).unwrap()).collect::<Vec<_>>();
        // 250 at once fit; 251 at once do not
        assert_eq!(invoice(Direction::Debit).with_items(items(250)).unwrap().items.len(), 250);
        assert!(invoice(Direction::Debit).with_items(items(251)).is_err());
        // 200 then 50 fit; one more is refused and changes nothing
        let mut inv = invoice(Direction::Debit);
        inv.add_items(items(200)).unwrap();
        inv.add_items(items(50)).unwrap();
        assert_eq!((inv.items.len(), inv.total), (250, 250));
        let before = inv.clone();
        let err = inv.add_items(items(1)).unwrap_err();
        assert!(matches!(err, DomainError::Invalid { code: "too_many_items", .. }));
        assert_eq!(inv, before);
    }

    #[test]
    fn every_change_to_a_draft_is_one_new_version() {
        // The store writes an invoice only over the version it read: each change must move it on.
        let mut inv = invoice(Direction::Debit);
        let v0 = inv.version;
        inv.add_items(vec![InvoiceItem::new("Seat", 1, 1000).unwrap()]).unwrap();
        assert_eq!(inv.version, v0 + 1);
        inv.add_adjustment(Adjustment { kind: AdjustmentKind::Discount, amount: -100, reason: "x".into() }).unwrap();
        assert_eq!(inv.version, v0 + 2);
        inv.add_adjustment(Adjustment { kind: AdjustmentKind::Credit, amount: -100, reason: "y".into() }).unwrap();
        assert_eq!((inv.version, inv.total), (v0 + 3, 800));
        inv.apply(A::Finalize, t(1, 0)).unwrap();
        assert_eq!(inv.version, v0 + 4);
    }

    #[test]
    fn a_metered_line_shows_fractions_only_where_there_are_some() {
        // 2.5 kWh at 0.4 cents: amount 1 cent; both fractions kept beside their rounded values
        let line = crate::plan::PricedLine {
            description: "Energy".into(),
            quantity: Decimal::new(25, 1),
            unit_amount: Decimal::new(4, 1),
            flat_amount: 0,
            amount: 1,
        };
        let item = InvoiceItem::metered(&line, "kwh").unwrap();
        assert_eq!((item.quantity, item.unit_amount, item.amount), (3, 0, 1));
        assert_eq!(
            (item.quantity_decimal, item.unit_amount_decimal),
            (Some(Decimal::new(25, 1)), Some(Decimal::new(4, 1)))
        );
        assert_eq!(item.metric.as_deref(), Some("kwh"));
        // 3 calls at 5 cents: whole numbers only, no decimal fields
        let line = crate::plan::PricedLine {
            description: "Calls".into(),
            quantity: Decimal::from(3),
            unit_amount: Decimal::from(5),
            flat_amount: 0,
            amount: 15,
        };
        let item = InvoiceItem::metered(&line, "calls").unwrap();
        assert_eq!((item.quantity, item.unit_amount, item.amount), (3, 5, 15));
        assert_eq!((item.quantity_decimal, item.unit_amount_decimal), (None, None));
    }

    #[test]
    fn a_retry_is_due_only_while_one_is_awaited_and_its_time_has_come() {
        // GIVEN a charge that failed on 1 March with a retry set for 4 March
        let mut inv = invoice(Direction::Debit);
        inv.add_items(vec![InvoiceItem::new("Pro", 1, 1000).unwrap()]).unwrap();
        inv.apply(A::Finalize, t(1, 0)).unwrap();
        inv.fail("card_declined", Some(t(4, 0)), t(1, 1)).unwrap();
        // THEN it waits, is not due a second early, and is due at its time and after
        assert!(inv.awaiting_retry());
        assert!(!inv.retry_due(t(4, 0) - Duration::seconds(1)));
        assert!(inv.retry_due(t(4, 0)));
        assert!(inv.retry_due(t(5, 0)));
        // AND while the retry runs (pending, its time kept) nothing else is awaited or due
        inv.apply(A::Retry, t(4, 0)).unwrap();
        assert_eq!(inv.next_attempt_at, Some(t(4, 0)));
        assert!(!inv.awaiting_retry());
        assert!(!inv.retry_due(t(5, 0)));
        // AND a failure with no retry left awaits nothing
        let mut last = invoice(Direction::Debit);
        last.add_items(vec![InvoiceItem::new("Pro", 1, 1000).unwrap()]).unwrap();
        last.apply(A::Finalize, t(1, 0)).unwrap();
        last.fail("card_declined", None, t(1, 1)).unwrap();
        assert!(!last.awaiting_retry());
        assert!(!last.retry_due(t(30, 0)));
    }

    #[test]
    fn giving_up_or_canceling_drops_the_scheduled_retry() {
        for action in [A::GiveUp, A::Cancel] {
            let mut inv = invoice(Direction::Debit);
            inv.add_items(vec![InvoiceItem::new("Pro", 1, 1000).unwrap()]).unwrap();
            inv.apply(A::Finalize, t(1, 0)).unwrap();
            inv.fail("card_declined", Some(t(4, 0)), t(1, 1)).unwrap();
            inv.apply(action, t(2, 0)).unwrap();
            assert_eq!(inv.next_attempt_at, None, "{action:?}: nothing left to try");
        }
    }

    #[test]
    fn a_failed_payout_can_be_tried_again_now_but_not_twice() {
        // GIVEN a payout that failed for good (no retry scheduled)
        let mut inv = invoice(Direction::Payout);
        inv.add_items(vec![InvoiceItem::new("Earnings", 1, 5000).unwrap()]).unwrap();
        inv.apply(A::Finalize, t(1, 0)).unwrap();
        inv.fail("account_closed", None, t(1, 1)).unwrap();
        assert!(!inv.awaiting_retry());
        // WHEN the tenant asks for one more attempt on 3 March THEN it is due at once
        inv.apply(A::Reschedule, t(3, 0)).unwrap();
        assert_eq!((inv.status, inv.next_attempt_at), (S::PayoutFailed, Some(t(3, 0))));
        assert!(inv.retry_due(t(3, 0)));
        assert_eq!(inv.attempt_time(2), Some(t(3, 0)));
        // AND asking again while it is scheduled is a conflict that changes nothing
        let before = inv.clone();
        let err = inv.apply(A::Reschedule, t(3, 1)).unwrap_err();
        assert!(matches!(err, DomainError::Conflict { code: "retry_scheduled", .. }));
        assert_eq!(inv, before);
    }

    #[test]
    fn each_attempt_runs_at_its_own_time() {
        // The first attempt at finalization (or creation, for an invoice never finalized), a
        // retry at the time dunning set; there is no attempt 0.
        let mut inv = invoice(Direction::Debit);
        assert_eq!(inv.attempt_time(1), Some(t(1, 0)), "created on 1 March");
        inv.add_items(vec![InvoiceItem::new("Pro", 1, 1000).unwrap()]).unwrap();
        inv.apply(A::Finalize, t(2, 0)).unwrap();
        inv.fail("card_declined", Some(t(5, 0)), t(2, 1)).unwrap();
        assert_eq!(inv.attempt_time(0), None);
        assert_eq!(inv.attempt_time(1), Some(t(2, 0)));
        assert_eq!(inv.attempt_time(2), Some(t(5, 0)));
    }

    #[test]
    fn refunds_are_bounded_by_the_amount_paid_and_the_window() {
        // GIVEN an invoice paid 20.00 at 1 March 01:00 and the default 7-day window
        let mut inv = paid(1000);
        let policy = RefundPolicy::default();
        // WHEN 5.00 then 15.00 are requested and confirmed THEN partially_refunded then refunded
        assert_eq!(inv.request_refund(Some(500), policy, t(2, 0)).unwrap(), 500);
        assert_eq!((inv.refundable(), inv.amount_refund_pending), (1500, 500));
        inv.refund(500, t(2, 0)).unwrap();
        assert_eq!((inv.status, inv.amount_refunded, inv.amount_refund_pending), (S::PartiallyRefunded, 500, 0));
        assert_eq!(inv.request_refund(None, policy, t(3, 0)).unwrap(), 1500, "the rest by default");
        inv.refund(1500, t(3, 0)).unwrap();
        assert_eq!((inv.status, inv.amount_refunded, inv.refunds_requested), (S::Refunded, 2000, 2));
        assert!(matches!(inv.request_refund(Some(1), policy, t(3, 0)), Err(DomainError::IllegalTransition { .. })));
        // AND no refund can be requested after the window (8 March 01:00 + 1 s)
        let mut late = paid(1000);
        let before = late.clone();
        let err = late.request_refund(Some(100), policy, t(8, 1) + Duration::seconds(1)).unwrap_err();
        assert!(matches!(err, DomainError::Invalid { code: "refund_window_expired", .. }));
        assert_eq!(late, before, "nothing changed");
        assert!(late.request_refund(Some(100), policy, t(8, 1)).is_ok(), "the window's last second is inside");
        assert!(paid(1000).request_refund(Some(0), policy, t(2, 0)).is_err());
    }

    #[test]
    fn refund_amounts_outside_what_is_paid_or_in_flight_are_refused() {
        // GIVEN 20.00 paid and a refund of 5.00 requested: one new version
        let mut inv = paid(1000);
        let v = inv.version;
        inv.request_refund(Some(500), RefundPolicy::default(), t(2, 0)).unwrap();
        assert_eq!(inv.version, v + 1);
        let before = inv.clone();
        // THEN the gateway can confirm neither nothing nor more than was paid
        assert!(matches!(inv.refund(0, t(2, 0)), Err(DomainError::Invalid { code: "refund_amount_invalid", .. })));
        assert!(matches!(inv.refund(2001, t(2, 0)), Err(DomainError::Invalid { code: "refund_amount_invalid", .. })));
        // AND a refusal releases what is in flight, never nothing and never more
        assert!(inv.release_refund(0).is_err());
        assert!(inv.release_refund(501).is_err());
        assert_eq!(inv, before, "nothing changed");
        inv.release_refund(500).unwrap();
        assert_eq!((inv.refundable(), inv.amount_refund_pending, inv.version), (2000, 0, v + 2));
    }

    #[test]
    fn refunds_in_flight_count_against_what_can_still_be_refunded() {
        // GIVEN 20.00 paid and 15.00 of refunds requested, not yet confirmed
        let mut inv = paid(1000);
        let policy = RefundPolicy::default();
        inv.request_refund(Some(1500), policy, t(2, 0)).unwrap();
        // WHEN another 6.00 is requested THEN it is refused: 15 + 6 > 20
        let err = inv.request_refund(Some(600), policy, t(2, 0)).unwrap_err();
        assert!(matches!(err, DomainError::Invalid { code: "refund_amount_invalid", .. }));
        // AND once the gateway refuses the first, its amount is refundable again
        inv.release_refund(1500).unwrap();
        assert_eq!(inv.request_refund(Some(600), policy, t(2, 0)).unwrap(), 600);
        assert_eq!((inv.refundable(), inv.status), (1400, S::Paid));
    }

    #[test]
    fn disputes_go_to_protest_then_chargeback_or_back_to_paid() {
        let mut won = paid(1000);
        won.apply(A::Contest, t(2, 0)).unwrap();
        assert_eq!(won.status, S::InProtest);
        won.apply(A::DisputeWon, t(3, 0)).unwrap();
        assert_eq!(won.status, S::Paid);
        let mut lost = paid(1000);
        lost.apply(A::Contest, t(2, 0)).unwrap();
        lost.apply(A::DisputeLost, t(3, 0)).unwrap();
        assert_eq!(lost.status, S::Chargeback);
    }

    #[test]
    fn proration_halfway_from_10_to_20_nets_plus_5() {
        // GIVEN a 30-day period and a change exactly halfway
        let period = Period { index: 0, start: t(1, 0), end: t(31, 0) };
        let (credit, charge) = prorate_change(1000, 2000, &period, t(16, 0)).unwrap();
        // THEN credit -5.00, charge +10.00, net +5.00
        assert_eq!((credit.amount, charge.amount), (-500, 1000));
        assert_eq!(credit.amount + charge.amount, 500);
        assert!(prorate_change(1000, 2000, &period, t(31, 0)).is_err());
    }

    #[test]
    fn a_change_at_the_periods_first_second_swaps_whole_prices() {
        // GIVEN a 30-day period WHEN the plan changes at its very start THEN the whole old price
        // is credited and the whole new one charged; a second before the period is outside it
        let period = Period { index: 0, start: t(1, 0), end: t(31, 0) };
        let (credit, charge) = prorate_change(1000, 2000, &period, t(1, 0)).unwrap();
        assert_eq!((credit.amount, charge.amount), (-1000, 2000));
        let err = prorate_change(1000, 2000, &period, t(1, 0) - Duration::seconds(1)).unwrap_err();
        assert!(matches!(err, DomainError::Invalid { code: "proration_invalid", .. }));
        // and the period's last second still prorates (one second of 2,592,000 rounds to nothing)
        let (credit, charge) = prorate_change(1000, 2000, &period, t(31, 0) - Duration::seconds(1)).unwrap();
        assert_eq!((credit.amount, charge.amount), (0, 0));
    }

    #[test]
    fn proration_is_to_the_second_and_rounds_once_half_away_from_zero() {
        // 1 second left of a 3-second period: credit 1000 × 1/3 = 333.33 → 333; the net is the
        // difference prorated and rounded once: −500 × 1/3 = −166.67 → −167, so the charge is 166
        // (500 × 1/3 = 166.67 on its own would round to 167 and the lines would net −166)
        let start = t(1, 0);
        let period = Period { index: 0, start, end: start + Duration::seconds(3) };
        let (credit, charge) = prorate_change(1000, 500, &period, start + Duration::seconds(2)).unwrap();
        assert_eq!((credit.amount, charge.amount), (-333, 166));
        assert_eq!(credit.amount + charge.amount, -167);
    }

    proptest::proptest! {
        #[test]
        fn prorating_an_unchanged_plan_nets_to_zero(amount in 0i64..=10_000_000, secs in 1i64..10_000_000, offset in 0i64..10_000_000) {
            let start = t(1, 0);
            let period = Period { index: 0, start, end: start + Duration::seconds(secs) };
            let (credit, charge) = prorate_change(amount, amount, &period, start + Duration::seconds(offset % secs)).unwrap();
            proptest::prop_assert_eq!(credit.amount + charge.amount, 0);
        }

        #[test]
        fn any_change_at_any_second_nets_to_the_exact_prorated_difference(
            old in 0i64..=10_000_000, new in 0i64..=10_000_000, secs in 1i64..40_000_000, offset in 0i64..40_000_000,
        ) {
            let start = t(1, 0);
            let period = Period { index: 0, start, end: start + Duration::seconds(secs) };
            let at = start + Duration::seconds(offset % secs);
            let (credit, charge) = prorate_change(old, new, &period, at).unwrap();
            let share = Decimal::from((period.end - at).num_seconds()) / Decimal::from(secs);
            // the two lines add up to the difference prorated and rounded once ...
            proptest::prop_assert_eq!(credit.amount + charge.amount, round_minor(Decimal::from(new - old) * share).unwrap());
            // ... and each is within a minor unit of its own exact share
            proptest::prop_assert!((Decimal::from(-credit.amount) - Decimal::from(old) * share).abs() <= Decimal::new(5, 1));
            proptest::prop_assert!((Decimal::from(charge.amount) - Decimal::from(new) * share).abs() <= Decimal::ONE);
        }
    }
}
