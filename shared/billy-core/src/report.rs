//! The dashboard's aggregates: revenue per day, invoices by status, the dunning funnel and the
//! renewals ahead, kept as counters from the journal (an invoice event's typed change and new
//! state say exactly what it moved; a subscription event's new state says which renewal it waits
//! for), so a report reads a few dozen counters, never every invoice. `tally` is the pure rule: one
//! audit event in, the counter changes it makes out.

use crate::audit::AuditEvent;
use crate::error::{DomainError, DomainResult};
use crate::ids::Id;
use crate::invoice::{Invoice, InvoiceAction, InvoiceStatus};
use crate::journal::InvoiceChange;
use crate::money::Currency;
use crate::plan::{Direction, PlanKind};
use crate::settlement::Month;
use crate::subscription::Subscription;
use crate::tenant::Scope;
use chrono::NaiveDate;
use serde::Serialize;
use std::collections::BTreeMap;

/// One counter of a bucket, by its stored (and reported) name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Counter {
    Collected,
    Refunded,
    PaidOut,
    ChargedBack,
    InvoicesPaid,
    Refunds,
    Payouts,
    Count,
    Amount,
    FirstAttemptFailed,
    Recovered,
    FailedForGood,
    AmountFailed,
    AmountRecovered,
    AmountLost,
}

impl Counter {
    pub const ALL: [Self; 15] = [
        Self::Collected,
        Self::Refunded,
        Self::PaidOut,
        Self::ChargedBack,
        Self::InvoicesPaid,
        Self::Refunds,
        Self::Payouts,
        Self::Count,
        Self::Amount,
        Self::FirstAttemptFailed,
        Self::Recovered,
        Self::FailedForGood,
        Self::AmountFailed,
        Self::AmountRecovered,
        Self::AmountLost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Collected => "collected",
            Self::Refunded => "refunded",
            Self::PaidOut => "paid_out",
            Self::ChargedBack => "charged_back",
            Self::InvoicesPaid => "invoices_paid",
            Self::Refunds => "refunds",
            Self::Payouts => "payouts",
            Self::Count => "count",
            Self::Amount => "amount",
            Self::FirstAttemptFailed => "first_attempt_failed",
            Self::Recovered => "recovered",
            Self::FailedForGood => "failed_for_good",
            Self::AmountFailed => "amount_failed",
            Self::AmountRecovered => "amount_recovered",
            Self::AmountLost => "amount_lost",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == raw)
    }
}

/// Counter values of one bucket.
pub type Counters = BTreeMap<Counter, i64>;

/// What a set of counters is about. Its key sorts by report, then time, then currency, so a
/// report over a range is one query.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Bucket {
    /// Money that moved on a day: collected, refunded, paid out.
    Revenue { day: NaiveDate, currency: Currency },
    /// Invoices now in a status, and their totals.
    Status { status: InvoiceStatus, currency: Currency },
    /// The dunning funnel of a month: first attempts that failed, recoveries, losses.
    Dunning { month: Month, currency: Currency },
    /// Debit subscriptions due to bill on a day, and the fixed part of what they will bill.
    Renewal { day: NaiveDate, currency: Currency },
}

impl Bucket {
    pub const REVENUE: &'static str = "REV";
    pub const STATUS: &'static str = "STATUS";
    pub const DUNNING: &'static str = "DUN";
    pub const RENEWAL: &'static str = "RENEW";

    pub fn key(&self) -> String {
        match self {
            Self::Revenue { day, currency } => format!("{}#{day}#{currency}", Self::REVENUE),
            Self::Status { status, currency } => format!("{}#{currency}#{}", Self::STATUS, status.as_str()),
            Self::Dunning { month, currency } => format!("{}#{month}#{currency}", Self::DUNNING),
            Self::Renewal { day, currency } => format!("{}#{day}#{currency}", Self::RENEWAL),
        }
    }

    /// Reads back a `key()`.
    pub fn parse(key: &str) -> Option<Self> {
        let mut parts = key.split('#');
        let (kind, a, b) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let day = |raw: &str| NaiveDate::parse_from_str(raw, "%Y-%m-%d").ok();
        let currency = |raw: &str| Currency::parse(raw, "currency").ok();
        match kind {
            Self::REVENUE => Some(Self::Revenue { day: day(a)?, currency: currency(b)? }),
            Self::STATUS => Some(Self::Status { currency: currency(a)?, status: status_named(b)? }),
            Self::DUNNING => Some(Self::Dunning { month: Month::parse(a, "month").ok()?, currency: currency(b)? }),
            Self::RENEWAL => Some(Self::Renewal { day: day(a)?, currency: currency(b)? }),
            _ => None,
        }
    }
}

const STATUSES: [InvoiceStatus; 14] = [
    InvoiceStatus::Draft,
    InvoiceStatus::Pending,
    InvoiceStatus::Paid,
    InvoiceStatus::ChargedWithError,
    InvoiceStatus::Failed,
    InvoiceStatus::Canceled,
    InvoiceStatus::Refunded,
    InvoiceStatus::PartiallyRefunded,
    InvoiceStatus::InProtest,
    InvoiceStatus::Chargeback,
    InvoiceStatus::PaidOut,
    InvoiceStatus::PayoutFailed,
    InvoiceStatus::InSettlement,
    InvoiceStatus::Settled,
];

fn status_named(raw: &str) -> Option<InvoiceStatus> {
    STATUSES.into_iter().find(|s| s.as_str() == raw)
}

/// What keeps a tally from being applied twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guard {
    /// Version `version` of entity `entity` (an invoice): the versions counted are kept per
    /// entity, so one write guards every event of that entity in a chunk.
    Version { entity: Id, version: u64 },
    /// The subscription's renewal state, replaced only from the version read: a tally that moves
    /// only renewals needs no other guard.
    Renewal,
    /// The event itself (an unversioned note), by its id.
    Event,
}

/// The counter changes one audit event makes, under its id (the tally is applied once per id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    pub event: Id,
    pub scope: Scope,
    pub guard: Guard,
    pub changes: BTreeMap<Bucket, Counters>,
    /// A subscription's renewal as of this event. The journal keeps only a subscription's new
    /// state, so which renewal it leaves is read from the last one counted for it (`renewals`).
    pub renewal: Option<RenewalState>,
    /// When `renewal` is to be recorded: the version of the state it replaces (`None`: none was
    /// counted), checked when it is written, so two writers never both move one renewal.
    pub replaces: Option<u64>,
}

/// A stream shard's checkpoint, as one chunk of its tallies moves it. The counting of a shard
/// is exactly once through it alone, because Lambda never hands over a record of a shard before
/// every record ahead of it was handed over and answered as done (or given up on, to the failure
/// queue): a chunk is applied only if the checkpoint is still where it was read, moving it past
/// the chunk's last tally in the same transaction, and what is at or before the checkpoint is not
/// counted again. One write per chunk instead of one per invoice. (The counting function keeps to
/// that order itself: it answers every batch before its timeout, and its mapping never splits a
/// failed batch.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The stream and shard (`<stream ARN>#<shard id>`).
    pub shard: String,
    /// The checkpoint the chunk was counted from; `None`: the shard has none yet.
    pub counted_to: Option<String>,
    /// The position of the chunk's last tally.
    pub to: String,
    /// The chunk also writes each tally's own guard. So it does while the shard has no
    /// checkpoint: events a version before checkpoints counted (a batch it left half counted,
    /// delivered again to this one) are then recognised by their guards.
    pub guarded: bool,
}

/// A tally's place in its shard, as a string that sorts in stream order: the record's sequence
/// number (decimal, up to 40 digits), zero-padded, then the event's index in the record's item.
pub fn position(sequence: &str, index: usize) -> String {
    format!("{sequence:0>48}#{index:04}")
}

/// The renewal one subscription waits for, as of one of its versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenewalState {
    pub subscription: Id,
    pub version: u64,
    /// The day bucket it is counted in and the fixed part of the bill; `None` when no bill is due.
    pub due: Option<(Bucket, i64)>,
}

impl Tally {
    fn add(&mut self, bucket: Bucket, counter: Counter, by: i64) {
        if by != 0 {
            *self.changes.entry(bucket).or_default().entry(counter).or_default() += by;
        }
    }

    /// Drops what cancelled out.
    fn settle(mut self) -> Option<Self> {
        drop_zeros(&mut self.changes);
        (!self.changes.is_empty() || self.renewal.is_some()).then_some(self)
    }

    /// Moves `renewal` from the state last counted (`counted`, if any) to this event's: nothing
    /// when this event is not newer than what was counted (a redelivery or a late straggler).
    /// Answers whether the tally's renewal is to be recorded.
    pub fn move_renewal(&mut self, counted: Option<&RenewalState>) -> bool {
        let Some(now) = self.renewal.clone() else { return false };
        if counted.is_some_and(|c| c.version >= now.version) {
            self.renewal = None;
            return false;
        }
        if let Some((bucket, amount)) = counted.and_then(|c| c.due.clone()) {
            self.add(bucket.clone(), Counter::Count, -1);
            self.add(bucket, Counter::Amount, -amount);
        }
        if let Some((bucket, amount)) = now.due {
            self.add(bucket.clone(), Counter::Count, 1);
            self.add(bucket, Counter::Amount, amount);
        }
        drop_zeros(&mut self.changes);
        true
    }
}

/// Removes the counters that came to zero, and the buckets left without any.
fn drop_zeros<K: Ord>(changes: &mut BTreeMap<K, Counters>) {
    for counters in changes.values_mut() {
        counters.retain(|_, v| *v != 0);
    }
    changes.retain(|_, c| !c.is_empty());
}

/// The counters an audit event moves, or `None` when it moves none (most of the journal).
pub fn tally(audit: &AuditEvent) -> DomainResult<Option<Tally>> {
    let guard = match audit.entity_type.as_str() {
        "subscription" => Guard::Renewal,
        _ if audit.version > 0 => Guard::Version { entity: audit.entity.clone(), version: audit.version },
        _ => Guard::Event,
    };
    let mut t = Tally {
        event: audit.id.clone(),
        scope: audit.scope.clone(),
        guard,
        changes: BTreeMap::new(),
        renewal: None,
        replaces: None,
    };
    match audit.entity_type.as_str() {
        "invoice" => {
            let after = snapshot::<Invoice>(audit, &audit.after)?;
            let change = snapshot::<InvoiceChange>(audit, &audit.change)?;
            if let (Some(after), Some(change)) = (after, change) {
                tally_invoice(&mut t, audit, &change, &after);
            }
        }
        // (A note, version 0, says nothing about which state is newer: renewals move by version.)
        "subscription" if audit.version > 0 => {
            if let Some(sub) = snapshot::<Subscription>(audit, &audit.after)? {
                t.renewal =
                    Some(RenewalState { subscription: sub.id.clone(), version: audit.version, due: renewal(&sub)? });
            }
        }
        _ => {}
    }
    Ok(t.settle())
}

fn snapshot<T: serde::de::DeserializeOwned>(
    audit: &AuditEvent,
    value: &Option<serde_json::Value>,
) -> DomainResult<Option<T>> {
    value
        .clone()
        .map(serde_json::from_value)
        .transpose()
        .map_err(|e| DomainError::unexpected(format!("audit event {} has an unreadable snapshot: {e}", audit.id)))
}

/// An invoice's totals change only while it is a draft (items, adjustments, and a coupon when it
/// is finalized), so a status's amount is kept for the statuses after draft, where it is fixed.
fn tally_invoice(t: &mut Tally, audit: &AuditEvent, change: &InvoiceChange, after: &Invoice) {
    let currency = after.currency;
    let status = |s: InvoiceStatus| Bucket::Status { status: s, currency };
    let amount_of = |s: InvoiceStatus| if s == InvoiceStatus::Draft { 0 } else { after.total };
    let (from, to, action, refunded) = match change {
        InvoiceChange::Created { invoice } => {
            t.add(status(invoice.status), Counter::Count, 1);
            t.add(status(invoice.status), Counter::Amount, amount_of(invoice.status));
            return;
        }
        InvoiceChange::Transitioned { from, to, action, amount, .. } => (*from, *to, *action, *amount),
        _ => return,
    };
    if from != to {
        t.add(status(from), Counter::Count, -1);
        t.add(status(from), Counter::Amount, -amount_of(from));
        t.add(status(to), Counter::Count, 1);
        t.add(status(to), Counter::Amount, amount_of(to));
    }
    let day = Bucket::Revenue { day: audit.at.date_naive(), currency };
    // Paid by a charge, or at once for a zero total; a won dispute only returns it to paid.
    let settled = from != to && matches!(action, InvoiceAction::Succeed | InvoiceAction::Finalize);
    let paid = if action == InvoiceAction::Succeed { after.amount_paid } else { 0 };
    match after.direction {
        Direction::Debit => {
            t.add(day.clone(), Counter::Collected, paid);
            t.add(day.clone(), Counter::InvoicesPaid, i64::from(settled && to == InvoiceStatus::Paid));
        }
        Direction::Payout => {
            t.add(day.clone(), Counter::PaidOut, paid);
            t.add(day.clone(), Counter::Payouts, i64::from(settled && to == InvoiceStatus::PaidOut));
        }
    }
    if matches!(action, InvoiceAction::RefundFull | InvoiceAction::RefundPartial) {
        let refunded = refunded.unwrap_or(0);
        t.add(day.clone(), Counter::Refunded, refunded);
        t.add(day.clone(), Counter::Refunds, i64::from(refunded > 0));
    }
    if action == InvoiceAction::DisputeLost {
        // What the payment still held when the dispute was lost goes back to the customer.
        t.add(day, Counter::ChargedBack, after.amount_paid - after.amount_refunded);
    }
    if after.direction == Direction::Debit {
        let month = Bucket::Dunning { month: Month::of(audit.at), currency };
        let failed = matches!(to, InvoiceStatus::ChargedWithError | InvoiceStatus::Failed);
        if failed && from == InvoiceStatus::Pending && after.attempt_count == 1 {
            t.add(month.clone(), Counter::FirstAttemptFailed, 1);
            t.add(month.clone(), Counter::AmountFailed, after.total);
        }
        // Paid after a failure: by a retry, or by a late answer to the first attempt.
        let after_failure = from == InvoiceStatus::ChargedWithError || after.attempt_count > 1;
        if action == InvoiceAction::Succeed && to == InvoiceStatus::Paid && after_failure {
            t.add(month.clone(), Counter::Recovered, 1);
            t.add(month.clone(), Counter::AmountRecovered, after.amount_paid);
        }
        if to == InvoiceStatus::Failed && from != to {
            t.add(month.clone(), Counter::FailedForGood, 1);
            t.add(month, Counter::AmountLost, after.total);
        }
    }
}

/// The renewal a subscription is waiting for: the day its next debit bill is due and the fixed
/// part of that bill (usage is priced only when its period closes).
fn renewal(sub: &Subscription) -> DomainResult<Option<(Bucket, i64)>> {
    let Some(at) = sub.next_bill_at()? else { return Ok(None) };
    let plan = sub.plan_for_period(sub.next_period);
    let amount = match plan.kind {
        PlanKind::FixedDebit { amount } => amount,
        PlanKind::MeteredDebit { base_amount, .. } => base_amount,
        PlanKind::FixedPayout { .. } | PlanKind::MeteredPayout { .. } => return Ok(None),
    };
    Ok(Some((Bucket::Renewal { day: at.date_naive(), currency: plan.currency }, amount)))
}

/// Several tallies' changes added up per (scope, bucket), for one write each.
pub fn merge<'a>(tallies: impl IntoIterator<Item = &'a Tally>) -> BTreeMap<(String, Bucket), Counters> {
    let mut merged: BTreeMap<(String, Bucket), Counters> = BTreeMap::new();
    for t in tallies {
        for (bucket, counters) in &t.changes {
            let into = merged.entry((t.scope.key(), bucket.clone())).or_default();
            for (counter, by) in counters {
                *into.entry(*counter).or_default() += by;
            }
        }
    }
    drop_zeros(&mut merged);
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Actor;
    use crate::journal;
    use crate::tenant::Mode;
    use chrono::{DateTime, TimeZone, Utc};

    fn usd() -> Currency {
        Currency::parse("usd", "currency").unwrap()
    }

    fn scope() -> Scope {
        Scope::new(Id::from_trusted("ten_1".into()), Mode::Test)
    }

    fn at(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, day, 10, 0, 0).unwrap()
    }

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, d).unwrap()
    }

    /// The audit event of `change` leaving `after`, on 2026-12-`d`.
    fn event(d: u32, after: &Invoice, change: &InvoiceChange) -> AuditEvent {
        AuditEvent {
            id: Id::from_trusted(format!("evt_{d}_{}", after.version)),
            scope: scope(),
            entity: after.id.clone(),
            entity_type: "invoice".into(),
            account: Some(after.customer.clone()),
            action: "invoice.changed".into(),
            version: after.version,
            at: at(d),
            actor: Actor::Admin,
            request_id: None,
            reason: None,
            before: None,
            after: Some(serde_json::to_value(after).unwrap()),
            change: Some(serde_json::to_value(change).unwrap()),
        }
    }

    fn draft(total: i64) -> Invoice {
        let inv = crate::invoice::test_draft(Direction::Debit, usd(), at(1));
        inv.with_items(vec![crate::invoice::InvoiceItem::new("Seat", 1, total).unwrap()]).unwrap()
    }

    fn pending(total: i64) -> Invoice {
        let mut inv = draft(total);
        journal::transition(&mut inv, InvoiceAction::Finalize, at(1)).unwrap();
        inv
    }

    /// Applies `step` to `inv` on day `d` and tallies the event it makes.
    fn step(inv: &mut Invoice, d: u32, step: impl FnOnce(&mut Invoice) -> DomainResult<InvoiceChange>) -> Tally {
        let change = step(inv).unwrap();
        tally(&event(d, inv, &change)).unwrap().expect("a tally")
    }

    fn counters(t: &Tally, bucket: &Bucket) -> Vec<(Counter, i64)> {
        t.changes.get(bucket).map(|c| c.iter().map(|(k, v)| (*k, *v)).collect()).unwrap_or_default()
    }

    fn status(s: InvoiceStatus) -> Bucket {
        Bucket::Status { status: s, currency: usd() }
    }

    #[test]
    fn a_paid_invoice_moves_its_status_and_the_days_collected_revenue() {
        // GIVEN a pending invoice of 1000
        let mut inv = pending(1000);
        // WHEN it is paid on 5 December
        let t = step(&mut inv, 5, |i| journal::transition(i, InvoiceAction::Succeed, at(5)));
        // THEN one invoice of 1000 leaves pending for paid, and the day collected 1000 from one invoice
        assert_eq!(counters(&t, &status(InvoiceStatus::Pending)), [(Counter::Count, -1), (Counter::Amount, -1000)]);
        assert_eq!(counters(&t, &status(InvoiceStatus::Paid)), [(Counter::Count, 1), (Counter::Amount, 1000)]);
        assert_eq!(
            counters(&t, &Bucket::Revenue { day: day(5), currency: usd() }),
            [(Counter::Collected, 1000), (Counter::InvoicesPaid, 1)]
        );
        assert!(!t.changes.keys().any(|b| matches!(b, Bucket::Dunning { .. })), "paid at the first attempt");
        // AND it is applied once by the invoice's version, a subscription's by its renewal state
        assert_eq!(t.guard, Guard::Version { entity: inv.id.clone(), version: inv.version });
        let sub = crate::subscription::test_subscription(at(1), None);
        assert_eq!(tally(&subscription_event(&sub, 2)).unwrap().unwrap().guard, Guard::Renewal);
    }

    #[test]
    fn a_refund_counts_on_the_day_it_is_confirmed() {
        // GIVEN a paid invoice of 1000
        let mut inv = pending(1000);
        journal::transition(&mut inv, InvoiceAction::Succeed, at(5)).unwrap();
        // WHEN 300 of it is asked back, then confirmed on the 7th
        let (_, asked) =
            journal::request_refund(&mut inv, Some(300), crate::invoice::RefundPolicy::default(), at(6)).unwrap();
        assert_eq!(tally(&event(6, &inv, &asked)).unwrap(), None, "nothing moves until the gateway confirms");
        let t = step(&mut inv, 7, |i| journal::refund(i, 300, at(7)));
        // THEN the 7th shows one refund of 300 and nothing collected
        assert_eq!(
            counters(&t, &Bucket::Revenue { day: day(7), currency: usd() }),
            [(Counter::Refunded, 300), (Counter::Refunds, 1)]
        );
        assert_eq!(
            counters(&t, &status(InvoiceStatus::PartiallyRefunded)),
            [(Counter::Count, 1), (Counter::Amount, 1000)]
        );
    }

    #[test]
    fn the_dunning_funnel_counts_a_first_failure_its_recovery_and_a_loss_once_each() {
        let dec = Bucket::Dunning { month: Month::of(at(5)), currency: usd() };
        // WHEN the first attempt fails
        let mut inv = pending(500);
        let t = step(&mut inv, 5, |i| journal::fail(i, "card_declined", Some(at(8)), at(5)));
        // THEN the month has one first-attempt failure of 500
        assert_eq!(counters(&t, &dec), [(Counter::FirstAttemptFailed, 1), (Counter::AmountFailed, 500)]);
        // WHEN the retry (attempt 2) fails again, nothing more enters the funnel
        let mut lost = inv.clone();
        step(&mut inv, 8, |i| journal::transition(i, InvoiceAction::Retry, at(8)));
        let t = step(&mut inv, 8, |i| journal::fail(i, "card_declined", Some(at(9)), at(8)));
        assert!(counters(&t, &dec).is_empty());
        // WHEN a later retry succeeds, the invoice is recovered
        step(&mut inv, 9, |i| journal::transition(i, InvoiceAction::Retry, at(9)));
        let t = step(&mut inv, 9, |i| journal::transition(i, InvoiceAction::Succeed, at(9)));
        assert_eq!(counters(&t, &dec), [(Counter::Recovered, 1), (Counter::AmountRecovered, 500)]);
        // WHEN another is given up on, it is lost
        let t = step(&mut lost, 10, |i| journal::transition(i, InvoiceAction::GiveUp, at(10)));
        assert_eq!(counters(&t, &dec), [(Counter::FailedForGood, 1), (Counter::AmountLost, 500)]);
    }

    #[test]
    fn a_won_dispute_is_no_second_payment_and_a_lost_one_is_charged_back() {
        let dec = |d| Bucket::Revenue { day: day(d), currency: usd() };
        // GIVEN an invoice of 800 paid after a retry, then contested
        let mut inv = pending(800);
        journal::fail(&mut inv, "card_declined", Some(at(3)), at(2)).unwrap();
        journal::transition(&mut inv, InvoiceAction::Retry, at(3)).unwrap();
        journal::transition(&mut inv, InvoiceAction::Succeed, at(3)).unwrap();
        let mut lost = inv.clone();
        step(&mut inv, 5, |i| journal::transition(i, InvoiceAction::Contest, at(5)));
        // WHEN the dispute is won
        let t = step(&mut inv, 9, |i| journal::transition(i, InvoiceAction::DisputeWon, at(9)));
        // THEN only its status moves back: nothing is paid, collected or recovered again
        assert_eq!(
            t.changes.keys().cloned().collect::<Vec<_>>(),
            [status(InvoiceStatus::Paid), status(InvoiceStatus::InProtest)]
        );
        // WHEN another is lost, its 800 are charged back that day
        step(&mut lost, 5, |i| journal::transition(i, InvoiceAction::Contest, at(5)));
        let t = step(&mut lost, 10, |i| journal::transition(i, InvoiceAction::DisputeLost, at(10)));
        assert_eq!(counters(&t, &dec(10)), [(Counter::ChargedBack, 800)]);
    }

    #[test]
    fn a_late_success_after_a_failed_first_attempt_is_a_recovery() {
        let dec = Bucket::Dunning { month: Month::of(at(5)), currency: usd() };
        let mut inv = pending(500);
        step(&mut inv, 5, |i| journal::fail(i, "processing_error", Some(at(6)), at(5)));
        // WHEN the first attempt's own success arrives late (attempt 1, after its failure)
        let t = step(&mut inv, 5, |i| journal::transition(i, InvoiceAction::Succeed, at(5)));
        assert_eq!(counters(&t, &dec), [(Counter::Recovered, 1), (Counter::AmountRecovered, 500)]);
    }

    #[test]
    fn a_draft_counts_without_an_amount_until_it_is_finalized() {
        let inv = draft(200);
        let t = tally(&event(1, &inv, &InvoiceChange::Created { invoice: Box::new(inv.clone()) })).unwrap().unwrap();
        assert_eq!(counters(&t, &status(InvoiceStatus::Draft)), [(Counter::Count, 1)]);
        let mut inv = inv;
        let items = vec![crate::invoice::InvoiceItem::new("More", 1, 150).unwrap()];
        inv.add_items(items.clone()).unwrap();
        assert_eq!(tally(&event(1, &inv, &InvoiceChange::ItemsAdded { items })).unwrap(), None);
        let t = step(&mut inv, 2, |i| journal::transition(i, InvoiceAction::Finalize, at(2)));
        assert_eq!(counters(&t, &status(InvoiceStatus::Draft)), [(Counter::Count, -1)]);
        assert_eq!(counters(&t, &status(InvoiceStatus::Pending)), [(Counter::Count, 1), (Counter::Amount, 350)]);
    }

    #[test]
    fn merging_adds_up_per_scope_and_bucket_and_drops_what_cancels() {
        let mut inv = pending(1000);
        let a = step(&mut inv, 5, |i| journal::transition(i, InvoiceAction::Succeed, at(5)));
        let mut b = a.clone();
        b.event = Id::from_trusted("evt_other".into());
        let merged = merge([&a, &b]);
        let revenue = &merged[&(scope().key(), Bucket::Revenue { day: day(5), currency: usd() })];
        assert_eq!(revenue[&Counter::Collected], 2000);
        assert_eq!(revenue[&Counter::InvoicesPaid], 2);
    }

    fn subscription_event(sub: &crate::subscription::Subscription, version: u64) -> AuditEvent {
        AuditEvent {
            entity: sub.id.clone(),
            entity_type: "subscription".into(),
            version,
            after: Some(serde_json::to_value(sub).unwrap()),
            change: None,
            ..event(1, &draft(1), &InvoiceChange::ItemsAdded { items: vec![] })
        }
    }

    #[test]
    fn a_renewal_moves_from_the_day_it_was_counted_to_the_next_once() {
        use crate::subscription::test_subscription;
        let on = |y, m| Bucket::Renewal { day: NaiveDate::from_ymd_opt(y, m, 1).unwrap(), currency: usd() };
        // GIVEN a 10.00 monthly subscription started 1 December, counted as renewing on 1 January
        let start = Utc.with_ymd_and_hms(2026, 12, 1, 0, 0, 0).unwrap();
        let mut sub = test_subscription(start, None);
        sub.record_billed(0, start).unwrap();
        let mut first = tally(&subscription_event(&sub, 2)).unwrap().unwrap();
        assert!(first.move_renewal(None));
        assert_eq!(counters(&first, &on(2027, 1)), [(Counter::Count, 1), (Counter::Amount, 1000)]);
        let counted = first.renewal.clone().unwrap();
        // WHEN January is billed
        sub.record_billed(1, Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).unwrap()).unwrap();
        let mut next = tally(&subscription_event(&sub, 3)).unwrap().unwrap();
        assert!(next.move_renewal(Some(&counted)));
        // THEN the renewal leaves 1 January for 1 February, with its 10.00
        assert_eq!(counters(&next, &on(2027, 1)), [(Counter::Count, -1), (Counter::Amount, -1000)]);
        assert_eq!(counters(&next, &on(2027, 2)), [(Counter::Count, 1), (Counter::Amount, 1000)]);
        // AND the same event again, or an older one, moves nothing
        let newer = next.renewal.clone().unwrap();
        let mut again = tally(&subscription_event(&sub, 3)).unwrap().unwrap();
        assert!(!again.move_renewal(Some(&newer)));
        assert!(again.changes.is_empty());
    }

    #[test]
    fn bucket_keys_read_back_and_sort_by_time() {
        let buckets = [
            Bucket::Revenue { day: day(5), currency: usd() },
            status(InvoiceStatus::ChargedWithError),
            Bucket::Dunning { month: Month::parse("2026-12", "m").unwrap(), currency: usd() },
            Bucket::Renewal { day: day(31), currency: usd() },
        ];
        for b in buckets {
            assert_eq!(Bucket::parse(&b.key()), Some(b));
        }
        let rev = |d| Bucket::Revenue { day: day(d), currency: usd() }.key();
        assert!(rev(5) < rev(6));
        assert_eq!(Bucket::parse("REV#2026-13-01#usd"), None);
    }
}
