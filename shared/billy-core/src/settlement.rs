//! Monthly netting (tenants on `settlement: monthly_net`): a customer who is both charged and paid
//! gets one settlement per month and currency instead of a charge or payout per invoice. Its
//! invoices enter `in_settlement`; the settlement lists them with what was charged, what was paid
//! out (already net of the commission, deducted once on the payout invoices) and the net. Money is
//! collected before it leaves: a net charge is made on the 1st of the next month, a net payout on
//! the 15th, each as an invoice of its own that follows the dunning or payout retry policy.
//!
//! A settlement job (hourly, and on demand) keeps the open months' figures up to date and closes a
//! month once it is over and its last usage is priced; a closed month is never changed again. Everything here is a pure function of the stored state and the time, so a run
//! repeated at the same time changes nothing.

use crate::error::{DomainError, DomainResult};
use crate::ids::Id;
use crate::invoice::{AdjustmentKind, Invoice, InvoiceStatus};
use crate::money::{Currency, checked_sum};
use crate::plan::Direction;
use chrono::{DateTime, Datelike, Duration, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::fmt;

/// How a tenant's invoices move money.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SettlementMode {
    /// Each invoice is charged or paid out on its own (the default).
    #[default]
    PerInvoice,
    /// A customer's invoices of a month are netted into one charge or payout.
    MonthlyNet,
}

/// A month closes this long after it ends: after the usage grace hour and the pricing that
/// follows it, so the month's last metered periods are in.
pub const CLOSE_DELAY_HOURS: i64 = 2;
/// A net payout leaves on this day of the next month; a net charge is made on the 1st.
pub const PAYOUT_DAY: u32 = 15;

/// A calendar month in UTC (`2026-06`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Month {
    year: i32,
    month: u32,
}

impl Month {
    pub fn of(at: DateTime<Utc>) -> Self {
        Self { year: at.year(), month: at.month() }
    }

    /// Parses `YYYY-MM`.
    pub fn parse(raw: &str, param: &str) -> DomainResult<Self> {
        let bad = || DomainError::invalid("month_invalid", format!("'{raw}' is not a month (YYYY-MM)"), Some(param));
        let (y, m) = raw.split_once('-').ok_or_else(bad)?;
        let digits = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(y, 4) || !digits(m, 2) {
            return Err(bad());
        }
        let (year, month) = (y.parse::<i32>().map_err(|_| bad())?, m.parse::<u32>().map_err(|_| bad())?);
        if !(1..=12).contains(&month) || !(1970..=9999).contains(&year) {
            return Err(bad());
        }
        Ok(Self { year, month })
    }

    fn day(self, day: u32) -> DateTime<Utc> {
        let date = NaiveDate::from_ymd_opt(self.year, self.month, day).unwrap_or(NaiveDate::MIN);
        Utc.from_utc_datetime(&date.and_hms_opt(0, 0, 0).unwrap_or_default())
    }

    pub fn start(self) -> DateTime<Utc> {
        self.day(1)
    }

    pub fn next(self) -> Self {
        if self.month == 12 {
            Self { year: self.year + 1, month: 1 }
        } else {
            Self { year: self.year, month: self.month + 1 }
        }
    }

    /// When the month closes: the 1st of the next, after the usage grace and pricing.
    pub fn closes_at(self) -> DateTime<Utc> {
        self.next().start() + Duration::hours(CLOSE_DELAY_HOURS)
    }

    /// When the month's net moves: a charge at its close (the 1st), a payout on the 15th.
    pub fn net_due_at(self, net: i64) -> DateTime<Utc> {
        if net < 0 { self.next().day(PAYOUT_DAY) + Duration::hours(CLOSE_DELAY_HOURS) } else { self.closes_at() }
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

impl Serialize for Month {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Month {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw, "month").map_err(serde::de::Error::custom)
    }
}

/// The month an invoice is settled in: the month its period ends in (its last instant), so a
/// month's metered usage, priced just after the month, is netted with that month; a one-off
/// invoice's month is that of its finalization.
pub fn settlement_month(inv: &Invoice) -> Month {
    match &inv.period {
        Some(period) => Month::of(period.end - Duration::seconds(1)),
        None => Month::of(inv.finalized_at.unwrap_or(inv.created)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SettlementStatus {
    /// The month is running: its figures follow its invoices.
    Open,
    /// The month is over: its figures are final, its net not yet moved.
    Closed,
    /// Its net was requested (as `net_invoice`), or there was nothing to move.
    Settled,
}

/// One invoice a settlement nets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettledInvoice {
    pub invoice: Id,
    pub direction: Direction,
    pub total: i64,
    /// The commission deducted on a payout invoice (positive), 0 on a debit.
    pub commission: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settlement {
    pub id: Id,
    pub customer: Id,
    pub currency: Currency,
    pub month: Month,
    pub status: SettlementStatus,
    pub invoices: Vec<SettledInvoice>,
    /// Sum of the debit invoices.
    pub charged: i64,
    /// Sum of the payout invoices (each already net of its commission).
    pub paid_out: i64,
    /// The commission the payout invoices deducted (shown, not deducted again).
    pub commission: i64,
    /// `charged − paid_out`: positive is collected from the customer, negative paid to them.
    pub net: i64,
    /// When the net moves (set when the month closes).
    pub net_due_at: Option<DateTime<Utc>>,
    /// The invoice that moves the net.
    pub net_invoice: Option<Id>,
    pub test_clock: Option<Id>,
    pub created: DateTime<Utc>,
    pub updated: DateTime<Utc>,
    pub livemode: bool,
    pub version: u64,
}

/// The figures of a set of invoices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Figures {
    pub charged: i64,
    pub paid_out: i64,
    pub commission: i64,
    pub net: i64,
}

pub fn figures(lines: &[SettledInvoice]) -> DomainResult<Figures> {
    let sum =
        |d: Direction, f: fn(&SettledInvoice) -> i64| checked_sum(lines.iter().filter(|l| l.direction == d).map(f));
    let charged = sum(Direction::Debit, |l| l.total)?;
    let paid_out = sum(Direction::Payout, |l| l.total)?;
    let commission = sum(Direction::Payout, |l| l.commission)?;
    let net = charged.checked_sub(paid_out).ok_or_else(|| DomainError::unexpected("net overflow"))?;
    Ok(Figures { charged, paid_out, commission, net })
}

/// The commission a payout invoice deducted (positive).
pub fn commission_of(inv: &Invoice) -> DomainResult<i64> {
    let mut total = 0;
    for cut in inv.adjustments.iter().filter(|a| a.kind == AdjustmentKind::Commission) {
        let amount = cut.amount.checked_neg().ok_or_else(|| DomainError::unexpected("commission out of range"))?;
        total = checked_sum([total, amount])?;
    }
    Ok(total)
}

pub fn line(inv: &Invoice) -> DomainResult<SettledInvoice> {
    Ok(SettledInvoice {
        invoice: inv.id.clone(),
        direction: inv.direction,
        total: inv.total,
        commission: commission_of(inv)?,
    })
}

/// One thing a settlement run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunChange {
    pub settlement: Id,
    pub customer: Id,
    pub currency: Currency,
    pub month: Month,
    /// `opened`, `updated`, `closed`, `invoices_settled` or `net_requested`.
    pub action: String,
    /// The figures before (none for a new month) and after.
    pub before: Option<Figures>,
    pub after: Figures,
    /// The invoice that moves the net (`net_requested`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoice: Option<Id>,
    /// How many invoices were marked settled (`invoices_settled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoices: Option<usize>,
}

/// A run of the settlement job over one tenant's mode: when, why, and everything it changed (an
/// empty list when it changed nothing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementRun {
    pub id: Id,
    /// `schedule` (nightly) or `api` (asked for).
    pub trigger: String,
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    /// How many accounts (customer and currency) it looked at.
    pub accounts: usize,
    pub changes: Vec<RunChange>,
    /// Accounts it could not finish (each retried by the next run), with why.
    pub errors: Vec<String>,
    pub livemode: bool,
}

impl Settlement {
    pub fn figures(&self) -> Figures {
        Figures { charged: self.charged, paid_out: self.paid_out, commission: self.commission, net: self.net }
    }

    fn with_lines(mut self, lines: Vec<SettledInvoice>, at: DateTime<Utc>) -> DomainResult<Self> {
        let f = figures(&lines)?;
        self.invoices = lines;
        (self.charged, self.paid_out, self.commission, self.net) = (f.charged, f.paid_out, f.commission, f.net);
        self.updated = at;
        Ok(self)
    }

    fn same_figures(&self, other: &Self) -> bool {
        let ids = |s: &Self| s.invoices.iter().map(|l| l.invoice.clone()).collect::<HashSet<_>>();
        (self.charged, self.paid_out, self.commission, self.net)
            == (other.charged, other.paid_out, other.commission, other.net)
            && ids(self) == ids(other)
    }
}

/// What a run does to one customer's settlements in one currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettlementStep {
    /// A month's running figures, new (`expected: None`) or changed.
    Update { settlement: Settlement, before: Option<Settlement>, expected: Option<u64> },
    /// A month closes with these figures (its net moves at `net_due_at`).
    Close { settlement: Settlement, before: Option<Settlement>, expected: Option<u64> },
    /// Invoices of a closed month still to be marked `settled`.
    MarkSettled { settlement: Id, invoices: Vec<Id> },
    /// A closed month's net is due: its invoice is made now.
    MoveNet { settlement: Settlement },
}

/// A customer's state for one currency, as a run reads it.
#[derive(Debug, Clone)]
pub struct Account<'a> {
    pub customer: &'a Id,
    pub currency: Currency,
    pub livemode: bool,
    pub test_clock: Option<&'a Id>,
    /// Its invoices still `in_settlement`.
    pub invoices: &'a [Invoice],
    /// Its settlements of every month, in any status.
    pub settlements: &'a [Settlement],
}

/// What a run at `now` does to one account; `new_id` names a new month's settlement. Months are
/// handled oldest first. An invoice goes to the first month, from its own, that is not closed
/// (so an invoice that arrives after its month closed is netted the month after, never lost);
/// a month that is over closes with what it has; a closed month is never changed again.
pub fn plan_run(
    now: DateTime<Utc>,
    account: &Account<'_>,
    mut new_id: impl FnMut() -> Id,
) -> DomainResult<Vec<SettlementStep>> {
    let mut steps = Vec::new();
    let finished: HashSet<Month> =
        account.settlements.iter().filter(|s| s.status != SettlementStatus::Open).map(|s| s.month).collect();
    let listed: BTreeMap<&Id, &Settlement> = account
        .settlements
        .iter()
        .filter(|s| s.status != SettlementStatus::Open)
        .flat_map(|s| s.invoices.iter().map(move |l| (&l.invoice, s)))
        .collect();
    let mut by_month: BTreeMap<Month, Vec<SettledInvoice>> = BTreeMap::new();
    let mut to_mark: BTreeMap<Id, Vec<Id>> = BTreeMap::new();
    for inv in account.invoices.iter().filter(|i| i.status == InvoiceStatus::InSettlement) {
        if let Some(closed) = listed.get(&inv.id) {
            to_mark.entry(closed.id.clone()).or_default().push(inv.id.clone());
            continue;
        }
        let mut month = settlement_month(inv);
        while finished.contains(&month) {
            month = month.next();
        }
        by_month.entry(month).or_default().push(line(inv)?);
    }
    // Open months with no invoice left (all canceled) still get their figures brought to zero.
    for s in account.settlements.iter().filter(|s| s.status == SettlementStatus::Open) {
        by_month.entry(s.month).or_default();
    }
    let mut closing = Vec::new();
    for (month, mut lines) in by_month {
        lines.sort_by(|a, b| a.invoice.cmp(&b.invoice));
        let before = account.settlements.iter().find(|s| s.month == month).cloned();
        let base = before.clone().unwrap_or_else(|| Settlement {
            id: new_id(),
            customer: account.customer.clone(),
            currency: account.currency,
            month,
            status: SettlementStatus::Open,
            invoices: Vec::new(),
            charged: 0,
            paid_out: 0,
            commission: 0,
            net: 0,
            net_due_at: None,
            net_invoice: None,
            test_clock: account.test_clock.cloned(),
            created: now,
            updated: now,
            livemode: account.livemode,
            version: 0,
        });
        let expected = before.as_ref().map(|s| s.version);
        let mut next = base.with_lines(lines, now)?;
        if now >= month.closes_at() {
            next.status = if next.net == 0 { SettlementStatus::Settled } else { SettlementStatus::Closed };
            next.net_due_at = Some(month.net_due_at(next.net));
            next.version += 1;
            closing.push(next.clone());
            steps.push(SettlementStep::Close { settlement: next, before, expected });
        } else if before.as_ref().is_none_or(|b| !b.same_figures(&next)) {
            next.version += 1;
            steps.push(SettlementStep::Update { settlement: next, before, expected });
        }
    }
    for (settlement, invoices) in to_mark {
        steps.push(SettlementStep::MarkSettled { settlement, invoices });
    }
    for s in &closing {
        let ids: Vec<Id> = s.invoices.iter().map(|l| l.invoice.clone()).collect();
        if !ids.is_empty() {
            steps.push(SettlementStep::MarkSettled { settlement: s.id.clone(), invoices: ids });
        }
    }
    let awaiting = account.settlements.iter().filter(|s| s.status == SettlementStatus::Closed).cloned();
    for s in awaiting.chain(closing.into_iter().filter(|s| s.status == SettlementStatus::Closed)) {
        if s.net_invoice.is_none() && s.net_due_at.is_some_and(|due| due <= now) {
            steps.push(SettlementStep::MoveNet { settlement: s });
        }
    }
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invoice::{Adjustment, InvoiceAction, InvoiceItem};
    use crate::schedule::Period;

    fn at(m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, m, d, h, 0, 0).unwrap()
    }

    fn id(raw: &str) -> Id {
        Id::from_trusted(raw.to_owned())
    }

    /// A monthly invoice for June (period 1 June – 1 July), deferred into settlement.
    fn june(name: &str, direction: Direction, gross: i64, commission: i64) -> Invoice {
        let period = Period { index: 0, start: at(6, 1, 0), end: at(7, 1, 0) };
        let mut inv = Invoice::draft(
            id(name),
            id("cus_1"),
            Some(id("sub_1")),
            direction,
            Currency::parse("usd", "currency").unwrap(),
            Some(period),
            at(7, 1, 1),
            false,
        );
        inv.add_items(vec![InvoiceItem::new("usage", 1, gross).unwrap()]).unwrap();
        if commission > 0 {
            inv.add_adjustment(Adjustment {
                kind: AdjustmentKind::Commission,
                amount: -commission,
                reason: "20%".into(),
            })
            .unwrap();
        }
        inv.apply(InvoiceAction::Defer, at(7, 1, 1)).unwrap();
        inv
    }

    fn ids() -> impl FnMut() -> Id {
        let mut n = 0;
        move || {
            n += 1;
            id(&format!("stl_{n}"))
        }
    }

    fn account<'a>(invoices: &'a [Invoice], settlements: &'a [Settlement], customer: &'a Id) -> Account<'a> {
        Account {
            customer,
            currency: Currency::parse("usd", "currency").unwrap(),
            livemode: false,
            test_clock: None,
            invoices,
            settlements,
        }
    }

    #[test]
    fn months_parse_print_and_close_on_the_first_and_pay_out_on_the_fifteenth() {
        let m = Month::parse("2026-12", "month").unwrap();
        assert_eq!((m.to_string(), m.next().to_string()), ("2026-12".to_owned(), "2027-01".to_owned()));
        assert_eq!(m.closes_at(), Utc.with_ymd_and_hms(2027, 1, 1, 2, 0, 0).unwrap());
        assert_eq!(m.net_due_at(100), m.closes_at());
        assert_eq!(m.net_due_at(-100), Utc.with_ymd_and_hms(2027, 1, 15, 2, 0, 0).unwrap());
        // nothing to move: nothing waits for the 15th
        assert_eq!(m.net_due_at(0), m.closes_at());
        for bad in ["2026-13", "2026-1", "26-01", "2026/01", "", "2026-+1", "+026-01"] {
            assert!(Month::parse(bad, "month").is_err(), "{bad}");
        }
    }

    #[test]
    fn june_usage_priced_on_the_first_of_july_belongs_to_june() {
        let inv = june("inv_1", Direction::Debit, 5000, 0);
        assert_eq!(settlement_month(&inv).to_string(), "2026-06");
    }

    #[test]
    fn an_open_month_follows_its_invoices_and_a_repeated_run_changes_nothing() {
        // GIVEN ad spend of 50.00 and site earnings of 30.00 less a 6.00 commission, on 1 July 01:00
        let customer = id("cus_1");
        let invoices = [june("inv_a", Direction::Debit, 5000, 0), june("inv_b", Direction::Payout, 3000, 600)];
        // WHEN a run looks before June closes
        let steps = plan_run(at(7, 1, 1), &account(&invoices, &[], &customer), ids()).unwrap();
        // THEN June's settlement opens with parts that add up: 50.00 − 24.00 = 26.00
        let [SettlementStep::Update { settlement, before: None, expected: None }] = steps.as_slice() else {
            panic!("{steps:?}")
        };
        assert_eq!(
            (settlement.charged, settlement.paid_out, settlement.commission, settlement.net),
            (5000, 2400, 600, 2600)
        );
        assert_eq!((settlement.month.to_string(), settlement.status), ("2026-06".to_owned(), SettlementStatus::Open));
        // AND a second run at the same time, over what the first stored, changes nothing
        let stored = [settlement.clone()];
        assert_eq!(plan_run(at(7, 1, 1), &account(&invoices, &stored, &customer), ids()).unwrap(), vec![]);
    }

    #[test]
    fn an_open_month_moves_on_with_each_change_to_its_invoices() {
        // GIVEN June opened on 1 July 01:00 with ad spend of 50.00 and earnings of 30.00 less 6.00
        let customer = id("cus_1");
        let invoices = [june("inv_a", Direction::Debit, 5000, 0), june("inv_b", Direction::Payout, 3000, 600)];
        let steps = plan_run(at(7, 1, 1), &account(&invoices, &[], &customer), ids()).unwrap();
        let [SettlementStep::Update { settlement: opened, .. }] = steps.as_slice() else { panic!("{steps:?}") };
        assert_eq!(opened.version, 1);
        // WHEN the payout invoice is replaced by another of the same amounts
        let swapped = [june("inv_a", Direction::Debit, 5000, 0), june("inv_c", Direction::Payout, 3000, 600)];
        let stored = [opened.clone()];
        let steps = plan_run(at(7, 1, 1), &account(&swapped, &stored, &customer), ids()).unwrap();
        // THEN the month still moves on: its list of invoices is what the tenant reads
        let [SettlementStep::Update { settlement: moved, before: Some(before), expected: Some(1) }] = steps.as_slice()
        else {
            panic!("{steps:?}")
        };
        assert_eq!((before.version, moved.version), (1, 2));
        assert_eq!(moved.invoices.iter().map(|l| l.invoice.as_str()).collect::<Vec<_>>(), vec!["inv_a", "inv_c"]);
        // WHEN one more ad invoice of 10.00 comes THEN its figures follow: 60.00 − 24.00 = 36.00
        let more = [swapped[0].clone(), swapped[1].clone(), june("inv_d", Direction::Debit, 1000, 0)];
        let stored = [moved.clone()];
        let steps = plan_run(at(7, 1, 1), &account(&more, &stored, &customer), ids()).unwrap();
        let [SettlementStep::Update { settlement: grown, expected: Some(2), .. }] = steps.as_slice() else {
            panic!("{steps:?}")
        };
        assert_eq!(grown.figures(), Figures { charged: 6000, paid_out: 2400, commission: 600, net: 3600 });
        // AND when June closes over that stored month, the close is one more version of it
        let stored = [grown.clone()];
        let steps = plan_run(at(7, 1, 2), &account(&more, &stored, &customer), ids()).unwrap();
        let SettlementStep::Close { settlement: closed, expected: Some(3), .. } = &steps[0] else {
            panic!("{steps:?}")
        };
        assert_eq!((closed.id.clone(), closed.version, closed.net), (grown.id.clone(), 4, 3600));
    }

    #[test]
    fn a_month_closes_after_its_end_marks_its_invoices_and_charges_its_net_on_the_first() {
        let customer = id("cus_1");
        let invoices = [june("inv_a", Direction::Debit, 5000, 0), june("inv_b", Direction::Payout, 3000, 600)];
        let steps = plan_run(at(7, 1, 2), &account(&invoices, &[], &customer), ids()).unwrap();
        let [
            SettlementStep::Close { settlement, .. },
            SettlementStep::MarkSettled { invoices: marked, .. },
            SettlementStep::MoveNet { settlement: moved },
        ] = steps.as_slice()
        else {
            panic!("{steps:?}")
        };
        assert_eq!(
            (settlement.status, settlement.net, settlement.net_due_at),
            (SettlementStatus::Closed, 2600, Some(at(7, 1, 2)))
        );
        assert_eq!(marked.len(), 2);
        assert_eq!(moved.id, settlement.id);
    }

    #[test]
    fn a_net_payout_waits_for_the_fifteenth_and_a_closed_month_is_never_changed() {
        let customer = id("cus_1");
        let invoices = [june("inv_a", Direction::Debit, 500, 0), june("inv_b", Direction::Payout, 10_000, 2000)];
        let steps = plan_run(at(7, 2, 0), &account(&invoices, &[], &customer), ids()).unwrap();
        let SettlementStep::Close { settlement, .. } = &steps[0] else { panic!("{steps:?}") };
        assert_eq!((settlement.net, settlement.net_due_at), (-7500, Some(at(7, 15, 2))));
        assert!(!steps.iter().any(|s| matches!(s, SettlementStep::MoveNet { .. })), "not before the 15th");
        // WHEN the run comes back on the 15th, with the month closed and its invoices settled
        let closed = [settlement.clone()];
        let steps = plan_run(at(7, 15, 2), &account(&[], &closed, &customer), ids()).unwrap();
        // THEN only the net payout is made; nothing of the month is recomputed
        assert!(matches!(steps.as_slice(), [SettlementStep::MoveNet { settlement }] if settlement.net == -7500));
    }

    #[test]
    fn an_invoice_of_a_month_already_closed_is_netted_the_month_after_never_lost() {
        let customer = id("cus_1");
        let first = [june("inv_a", Direction::Debit, 5000, 0)];
        let SettlementStep::Close { settlement, .. } =
            plan_run(at(7, 1, 2), &account(&first, &[], &customer), ids()).unwrap().remove(0)
        else {
            panic!()
        };
        let mut closed = settlement;
        closed.status = SettlementStatus::Settled;
        let late = [june("inv_late", Direction::Debit, 700, 0)];
        let closed = [closed];
        let steps = plan_run(at(7, 3, 0), &account(&late, &closed, &customer), ids()).unwrap();
        let [SettlementStep::Update { settlement, .. }] = steps.as_slice() else { panic!("{steps:?}") };
        assert_eq!((settlement.month.to_string(), settlement.charged), ("2026-07".to_owned(), 700));
    }
}
