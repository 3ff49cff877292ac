//! Subscriptions: a customer on a plan, which periods are due for billing (catch-up included),
//! cancellation now or at period end, and plan changes (scheduled, or now with proration).

use crate::coupon::{Coupon, Discount};
use crate::error::{DomainError, DomainResult};
use crate::ids::Id;
use crate::invoice::{Adjustment, InvoiceItem, prorate_change};
use crate::plan::{Plan, PlanKind};
use crate::schedule::Period;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    Trialing,
    Active,
    PastDue,
    Canceled,
    Ended,
}

impl SubscriptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trialing => "trialing",
            Self::Active => "active",
            Self::PastDue => "past_due",
            Self::Canceled => "canceled",
            Self::Ended => "ended",
        }
    }

    pub fn is_live(self) -> bool {
        matches!(self, Self::Trialing | Self::Active | Self::PastDue)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionAction {
    TrialEnd,
    PaymentFailed,
    PaymentRecovered,
    Cancel,
    End,
}

use SubscriptionAction as SA;
use SubscriptionStatus as SS;

pub const SUBSCRIPTION_TRANSITIONS: &[(SubscriptionStatus, SubscriptionAction, SubscriptionStatus)] = &[
    (SS::Trialing, SA::TrialEnd, SS::Active),
    (SS::Active, SA::PaymentFailed, SS::PastDue),
    (SS::PastDue, SA::PaymentFailed, SS::PastDue),
    (SS::PastDue, SA::PaymentRecovered, SS::Active),
    (SS::Trialing, SA::Cancel, SS::Canceled),
    (SS::Active, SA::Cancel, SS::Canceled),
    (SS::PastDue, SA::Cancel, SS::Canceled),
    (SS::Trialing, SA::End, SS::Ended),
    (SS::Active, SA::End, SS::Ended),
    (SS::PastDue, SA::End, SS::Ended),
];

/// How long before a subscription's scheduled end `subscription.ending` is announced.
pub const ENDING_NOTICE: Duration = Duration::days(7);
/// How long before a renewal `invoice.upcoming` is announced (a debit plan's renewal; periods no
/// longer than this get none, like Stripe's).
pub const UPCOMING_NOTICE: Duration = Duration::days(3);
/// How long before a trial ends `subscription.trial_will_end` is announced (at once for a shorter
/// trial).
pub const TRIAL_NOTICE: Duration = Duration::days(3);
/// At most this many one-off items wait for the next invoice.
pub const MAX_PENDING_ITEMS: usize = 50;

/// A plan change waiting for its period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduledChange {
    pub plan: Plan,
    /// The first period index billed on the new plan.
    pub from_period: u64,
}

/// Stored without its empty fields (absent reads as none, empty or false): a subscription item
/// under 1 KB costs half the write units of one just over, in the table and in each index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: Id,
    pub customer: Id,
    /// The current plan, frozen (plans are immutable, so this is the plan as billed).
    pub plan: Plan,
    pub status: SubscriptionStatus,
    pub start: DateTime<Utc>,
    /// Periods count from here: the start, or the trial's end.
    pub billing_anchor: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial_end: Option<DateTime<Utc>>,
    /// Index of the next period to bill.
    pub next_period: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancel_at_period_end: bool,
    /// Periods that start at or after this are not billed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancel_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canceled_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_change: Option<ScheduledChange>,
    /// A coupon and how many invoices it has discounted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discount: Option<Discount>,
    /// One-off items billed on the next invoice (the mini-fridge on the hotel room's bill).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending_items: Vec<InvoiceItem>,
    /// `subscription.ending` has been announced (ahead of a fixed term's or a cancellation's end).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ending_announced: bool,
    /// The last period whose renewal `invoice.upcoming` announced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upcoming_announced: Option<u64>,
    /// `subscription.trial_will_end` has been announced.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub trial_notice_announced: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_method: Option<Id>,
    /// The customer's test clock, if any: its advances drive this subscription's billing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_clock: Option<Id>,
    pub created: DateTime<Utc>,
    pub livemode: bool,
    pub version: u64,
}

/// One period that must be billed, with the plan that prices it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuePeriod {
    pub period: Period,
    pub plan: Plan,
    /// When it became due: the period's start (in advance) or end (in arrears).
    pub due_at: DateTime<Utc>,
}

impl Subscription {
    /// A new subscription; `start` defaults to now (the test clock's now in test mode).
    pub fn new(
        id: Id,
        customer: Id,
        plan: Plan,
        start: DateTime<Utc>,
        payment_method: Option<Id>,
        now: DateTime<Utc>,
    ) -> DomainResult<Self> {
        if start < now - Duration::days(366) {
            return Err(DomainError::invalid(
                "start_invalid",
                "start may be at most a year in the past",
                Some("start"),
            ));
        }
        let trial_end = plan.trial_period_days.map(|d| start + Duration::days(i64::from(d)));
        Ok(Self {
            id,
            customer,
            status: if trial_end.is_some() { SS::Trialing } else { SS::Active },
            start,
            billing_anchor: trial_end.unwrap_or(start),
            trial_end,
            next_period: 0,
            cancel_at_period_end: false,
            cancel_at: None,
            canceled_at: None,
            ended_at: None,
            pending_change: None,
            discount: None,
            pending_items: Vec::new(),
            ending_announced: false,
            upcoming_announced: None,
            trial_notice_announced: false,
            payment_method,
            test_clock: None,
            created: now,
            livemode: plan.livemode,
            plan,
            version: 1,
        })
    }

    pub fn period(&self, index: u64) -> DomainResult<Period> {
        self.plan.cadence.period(self.billing_anchor, index)
    }

    /// The period containing `now` (before the anchor: none).
    pub fn current_period(&self, now: DateTime<Utc>) -> DomainResult<Option<Period>> {
        self.plan.cadence.period_at(self.billing_anchor, now)
    }

    /// The plan that prices period `index` (a scheduled change's, from its period on).
    pub fn plan_for_period(&self, index: u64) -> &Plan {
        match &self.pending_change {
            Some(change) if index >= change.from_period => &change.plan,
            _ => &self.plan,
        }
    }

    /// When a period of `plan` is billed: fixed prices at its start, usage once the period has
    /// stopped taking it (an hour after its end), a fixed payout at its end.
    pub fn due_at(plan: &Plan, period: &Period) -> DateTime<Utc> {
        if plan.kind.bills_in_advance() {
            period.start
        } else if plan.kind.is_metered() {
            crate::usage::closes_at(period)
        } else {
            period.end
        }
    }

    /// When the next invoice is due, or `None` when no more will be made.
    pub fn next_bill_at(&self) -> DomainResult<Option<DateTime<Utc>>> {
        if !self.status.is_live() {
            return Ok(None);
        }
        let period = self.period(self.next_period)?;
        if self.cancel_at.is_some_and(|c| period.start >= c) {
            return Ok(None);
        }
        Ok(Some(Self::due_at(self.plan_for_period(self.next_period), &period)))
    }

    /// When this subscription next needs the billing tick: its next bill, the announcement of its
    /// coming end, or — when it is set to end and has nothing more to bill — the time it ends.
    pub fn next_due_at(&self) -> DomainResult<Option<DateTime<Utc>>> {
        let next = match self.next_bill_at()? {
            Some(at) => Some(at),
            None if self.status.is_live() => self.cancel_at,
            None => None,
        };
        let notices = [self.ending_notice_at(), self.upcoming_notice_at(self.next_period)?, self.trial_notice_at()];
        Ok(notices.into_iter().flatten().chain(next).min())
    }

    /// When `invoice.upcoming` is due for period `index`, if it is a renewal of a debit plan that
    /// has not been announced: `UPCOMING_NOTICE` before it is billed, provided the period before
    /// it was billed earlier than that.
    pub fn upcoming_notice_at(&self, index: u64) -> DomainResult<Option<DateTime<Utc>>> {
        let announced = self.upcoming_announced.is_some_and(|n| n >= index);
        if index == 0 || announced || !self.status.is_live() {
            return Ok(None);
        }
        let plan = self.plan_for_period(index);
        let period = self.period(index)?;
        if plan.kind.direction() != crate::plan::Direction::Debit || self.cancel_at.is_some_and(|c| period.start >= c) {
            return Ok(None);
        }
        let notice = Self::due_at(plan, &period) - UPCOMING_NOTICE;
        let previous = Self::due_at(self.plan_for_period(index - 1), &self.period(index - 1)?);
        Ok((notice > previous).then_some(notice))
    }

    /// Records that period `index`'s renewal was announced.
    pub fn take_upcoming_notice(&mut self, index: u64) {
        self.upcoming_announced = Some(index);
        self.version += 1;
    }

    /// When `subscription.trial_will_end` is due, if it has not been announced.
    pub fn trial_notice_at(&self) -> Option<DateTime<Utc>> {
        let end = self.trial_end?;
        (self.status == SubscriptionStatus::Trialing && !self.trial_notice_announced)
            .then(|| (end - TRIAL_NOTICE).max(self.start))
    }

    /// Announces the trial's coming end once its notice time has come: whether it is due now.
    pub fn take_trial_notice(&mut self, now: DateTime<Utc>) -> bool {
        if self.trial_notice_at().is_some_and(|at| now >= at) {
            self.trial_notice_announced = true;
            self.version += 1;
            return true;
        }
        false
    }

    /// When `subscription.ending` is due, if it has not been announced: a week before a scheduled
    /// end (at once, for an end closer than that).
    pub fn ending_notice_at(&self) -> Option<DateTime<Utc>> {
        let end = self.cancel_at?;
        (self.status.is_live() && !self.ending_announced).then(|| (end - ENDING_NOTICE).max(self.start))
    }

    /// Announces the coming end once its notice time has come: whether it is due now.
    pub fn take_ending_notice(&mut self, now: DateTime<Utc>) -> bool {
        if self.ending_notice_at().is_some_and(|at| now >= at) && self.cancel_at.is_some_and(|end| now < end) {
            self.ending_announced = true;
            self.version += 1;
            return true;
        }
        false
    }

    /// A fixed term: the subscription ends by itself after `periods` periods, or at `end_at`
    /// (periods that start before it are billed whole).
    pub fn set_term(&mut self, end_at: Option<DateTime<Utc>>, periods: Option<u32>) -> DomainResult<()> {
        let end = match (end_at, periods) {
            (None, None) => return Ok(()),
            (Some(_), Some(_)) => {
                return Err(DomainError::invalid(
                    "parameter_invalid",
                    "give end_at or periods, not both",
                    Some("periods"),
                ));
            }
            (Some(at), None) => at,
            (None, Some(n)) if (1..=1200).contains(&n) => self.period(u64::from(n))?.start,
            (None, Some(_)) => {
                return Err(DomainError::invalid("parameter_invalid", "periods is 1 to 1200", Some("periods")));
            }
        };
        if end <= self.start {
            return Err(DomainError::invalid(
                "end_invalid",
                "the term must end after the subscription starts",
                Some("end_at"),
            ));
        }
        self.cancel_at = Some(end);
        Ok(())
    }

    /// Adds a one-off item to the next invoice.
    pub fn add_pending_item(&mut self, item: InvoiceItem) -> DomainResult<()> {
        if !self.status.is_live() || self.next_bill_at()?.is_none() {
            return Err(DomainError::invalid(
                "subscription_ending",
                "the subscription has no next invoice to add the item to",
                Some("subscription"),
            ));
        }
        if self.pending_items.len() >= MAX_PENDING_ITEMS {
            return Err(DomainError::invalid(
                "too_many_items",
                format!("at most {MAX_PENDING_ITEMS} items wait for the next invoice"),
                Some("items"),
            ));
        }
        self.pending_items.push(item);
        self.version += 1;
        Ok(())
    }

    /// Puts a coupon on the subscription (replacing any other), for its next invoices.
    pub fn apply_coupon(&mut self, coupon: Coupon) -> DomainResult<()> {
        if !self.status.is_live() {
            return Err(DomainError::IllegalTransition {
                entity: "subscription",
                from: self.status.as_str().into(),
                action: "discount".into(),
            });
        }
        coupon.check_currency(self.plan.currency)?;
        self.discount = Some(Discount::new(coupon));
        self.version += 1;
        Ok(())
    }

    /// Withdraws the scheduled plan change.
    pub fn withdraw_change(&mut self) -> DomainResult<ScheduledChange> {
        let change = self.pending_change.take().ok_or_else(|| {
            DomainError::conflict("no_change_pending", "no plan change is scheduled for this subscription")
        })?;
        self.version += 1;
        Ok(change)
    }

    /// Every period due by `now` and not yet billed, in order (several after an outage or a test
    /// clock jump). A canceled or ended subscription has none; nothing is due before the start.
    pub fn due_periods(&self, now: DateTime<Utc>) -> DomainResult<Vec<DuePeriod>> {
        let mut due = Vec::new();
        if !self.status.is_live() {
            return Ok(due);
        }
        let mut index = self.next_period;
        while due.len() < crate::schedule::MAX_CATCH_UP_PERIODS {
            let period = self.period(index)?;
            if self.cancel_at.is_some_and(|c| period.start >= c) {
                break;
            }
            let plan = self.plan_for_period(index);
            let due_at = Self::due_at(plan, &period);
            if due_at > now {
                break;
            }
            due.push(DuePeriod { period, plan: plan.clone(), due_at });
            index += 1;
        }
        Ok(due)
    }

    pub fn apply(&mut self, action: SubscriptionAction) -> DomainResult<SubscriptionStatus> {
        let from = self.status;
        let to = SUBSCRIPTION_TRANSITIONS
            .iter()
            .find(|(f, a, _)| *f == from && *a == action)
            .map(|(_, _, t)| *t)
            .ok_or_else(|| DomainError::IllegalTransition {
                entity: "subscription",
                from: from.as_str().into(),
                action: format!("{action:?}").to_lowercase(),
            })?;
        self.status = to;
        self.version += 1;
        Ok(from)
    }

    /// Records that period `index` has its invoice: moves on, ends the trial, swaps in a scheduled
    /// plan (`true` when it did), and ends the subscription when its cancellation date is reached.
    pub fn record_billed(&mut self, index: u64, now: DateTime<Utc>) -> DomainResult<bool> {
        if index != self.next_period {
            return Err(DomainError::conflict(
                "period_out_of_order",
                format!("period {index} billed but period {} is next", self.next_period),
            ));
        }
        self.next_period = index + 1;
        if self.status == SS::Trialing && self.trial_end.is_some_and(|t| now >= t) {
            self.status = SS::Active;
        }
        let swapped = self.pending_change.take_if(|c| c.from_period <= index).map(|change| self.plan = change.plan);
        self.end_if_due(now)?;
        self.version += 1;
        Ok(swapped.is_some())
    }

    /// A subscription set to cancel at period end ends once that time has passed and all its
    /// periods are billed.
    pub fn end_if_due(&mut self, now: DateTime<Utc>) -> DomainResult<bool> {
        let Some(cancel_at) = self.cancel_at else {
            return Ok(false);
        };
        if self.status.is_live() && now >= cancel_at && self.next_bill_at()?.is_none() {
            self.apply(SA::End)?;
            self.ended_at = Some(cancel_at);
            return Ok(true);
        }
        Ok(false)
    }

    /// Cancels now (no further invoices), or at the end of the current period.
    pub fn cancel(&mut self, at_period_end: bool, now: DateTime<Utc>) -> DomainResult<()> {
        if !self.status.is_live() {
            return Err(DomainError::IllegalTransition {
                entity: "subscription",
                from: self.status.as_str().into(),
                action: "cancel".into(),
            });
        }
        if at_period_end {
            if self.cancel_at_period_end {
                return Err(DomainError::conflict(
                    "already_canceling",
                    "the subscription is already set to cancel at period end",
                ));
            }
            let end = match self.current_period(now)? {
                Some(p) => p.end,
                // Before the anchor (trial, future start): cancel when billing would begin.
                None => self.billing_anchor,
            };
            self.cancel_at_period_end = true;
            self.cancel_at = Some(end);
            self.canceled_at = Some(now);
            self.version += 1;
        } else {
            self.apply(SA::Cancel)?;
            self.canceled_at = Some(now);
            self.cancel_at = Some(now);
            self.ended_at = Some(now);
        }
        Ok(())
    }

    /// A plan change needs a live subscription, no change already pending, and a compatible plan.
    fn check_change(&self, plan: &Plan) -> DomainResult<()> {
        if !self.status.is_live() {
            return Err(DomainError::IllegalTransition {
                entity: "subscription",
                from: self.status.as_str().into(),
                action: "change".into(),
            });
        }
        if self.pending_change.is_some() {
            return Err(DomainError::conflict(
                "change_pending",
                "a plan change is already scheduled for this subscription",
            ));
        }
        self.check_compatible(plan)
    }

    fn check_compatible(&self, plan: &Plan) -> DomainResult<()> {
        if plan.currency != self.plan.currency {
            return Err(DomainError::invalid(
                "plan_incompatible",
                "the new plan must use the same currency",
                Some("plan"),
            ));
        }
        if plan.kind.direction() != self.plan.kind.direction() {
            return Err(DomainError::invalid(
                "plan_incompatible",
                "cannot change between debit and payout plans",
                Some("plan"),
            ));
        }
        if plan.id == self.plan.id {
            return Err(DomainError::invalid(
                "plan_unchanged",
                "the subscription is already on this plan",
                Some("plan"),
            ));
        }
        Ok(())
    }

    /// Schedules `plan` from the next period on. A change already pending is a conflict, never
    /// silently overwritten.
    pub fn schedule_change(&mut self, plan: Plan, now: DateTime<Utc>) -> DomainResult<()> {
        self.check_change(&plan)?;
        if plan.cadence != self.plan.cadence {
            // Periods count from the anchor in the plan's cadence: another cadence would move them.
            return Err(DomainError::invalid(
                "plan_incompatible",
                "the new plan must bill at the same frequency and interval; cancel at period end and subscribe to change it",
                Some("plan"),
            ));
        }
        let from_period = self.current_period(now)?.map_or(0, |p| p.index + 1).max(self.next_period);
        self.pending_change = Some(ScheduledChange { plan, from_period });
        self.version += 1;
        Ok(())
    }

    /// Switches to `plan` now: returns the proration adjustments (credit for the unused old plan,
    /// charge for the rest of the period on the new one) for the invoice that collects them.
    pub fn change_now(&mut self, plan: Plan, now: DateTime<Utc>) -> DomainResult<(Adjustment, Adjustment)> {
        self.check_change(&plan)?;
        if plan.cadence != self.plan.cadence {
            return Err(DomainError::invalid(
                "plan_incompatible",
                "an immediate change needs the same billing frequency and interval; schedule it for the next period",
                Some("plan"),
            ));
        }
        let (PlanKind::FixedDebit { amount: old }, PlanKind::FixedDebit { amount: new }) =
            (&self.plan.kind, &plan.kind)
        else {
            return Err(DomainError::invalid(
                "plan_incompatible",
                "immediate changes with proration are for fixed-price debit plans; schedule metered changes for the next period",
                Some("plan"),
            ));
        };
        let period = self.current_period(now)?.ok_or_else(|| {
            DomainError::invalid(
                "proration_invalid",
                "the subscription has not started billing yet; schedule the change",
                Some("effective"),
            )
        })?;
        let adjustments = prorate_change(*old, *new, &period, now)?;
        self.plan = plan;
        self.version += 1;
        Ok(adjustments)
    }
}

/// A monthly test-mode debit plan of `amount` cents (USD) made on 1 January 2026.
#[cfg(test)]
pub(crate) fn test_plan(id: &str, amount: i64, trial: Option<u32>) -> Plan {
    use chrono::TimeZone;
    Plan::new(
        Id::from_trusted(id.into()),
        crate::plan::NewPlan {
            name: id.into(),
            description: None,
            currency: crate::money::Currency::parse("usd", "c").unwrap(),
            cadence: crate::schedule::Cadence::new(crate::schedule::Frequency::Monthly, 1).unwrap(),
            trial_period_days: trial,
            kind: PlanKind::FixedDebit { amount },
        },
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
        false,
    )
    .unwrap()
}

/// `sub_1` of `cus_1` on a 10.00 monthly test plan, made at `start`.
#[cfg(test)]
pub(crate) fn test_subscription(start: DateTime<Utc>, trial: Option<u32>) -> Subscription {
    Subscription::new(
        Id::from_trusted("sub_1".into()),
        Id::from_trusted("cus_1".into()),
        test_plan("plan_a", 1000, trial),
        start,
        None,
        start,
    )
    .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn day(m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, m, d, 0, 0, 0).unwrap()
    }

    fn plan(id: &str, amount: i64, trial: Option<u32>) -> Plan {
        test_plan(id, amount, trial)
    }

    fn sub(start: DateTime<Utc>, trial: Option<u32>) -> Subscription {
        test_subscription(start, trial)
    }

    fn bill_all(s: &mut Subscription, now: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let due = s.due_periods(now).unwrap();
        for d in &due {
            s.record_billed(d.period.index, now).unwrap();
        }
        due.into_iter().map(|d| d.period.start).collect()
    }

    #[test]
    fn three_months_after_the_start_four_periods_have_begun_and_are_billed_once_each() {
        // GIVEN a monthly subscription started 31 January
        let mut s = sub(day(1, 31), None);
        // WHEN billing runs only once, on 30 April (catch-up)
        let billed = bill_all(&mut s, day(4, 30));
        // THEN Jan 31, Feb 28, Mar 31 and Apr 30 are billed in order, and a second run bills nothing
        assert_eq!(billed, vec![day(1, 31), day(2, 28), day(3, 31), day(4, 30)]);
        assert!(bill_all(&mut s, day(4, 30)).is_empty());
        assert_eq!(s.next_bill_at().unwrap(), Some(day(5, 31)));
    }

    #[test]
    fn a_trial_moves_the_anchor_and_bills_nothing_until_it_ends() {
        let mut s = sub(day(3, 1), Some(14));
        assert_eq!((s.status, s.billing_anchor), (SS::Trialing, day(3, 15)));
        assert!(bill_all(&mut s, day(3, 14)).is_empty());
        assert_eq!(bill_all(&mut s, day(3, 15)), vec![day(3, 15)]);
        assert_eq!(s.status, SS::Active);
    }

    #[test]
    fn a_future_start_bills_nothing_before_it_starts() {
        let mut s = Subscription::new(
            Id::from_trusted("sub_1".into()),
            Id::from_trusted("cus_1".into()),
            plan("plan_a", 1000, None),
            day(6, 1),
            None,
            day(3, 1),
        )
        .unwrap();
        assert!(bill_all(&mut s, day(5, 31)).is_empty());
        assert_eq!(bill_all(&mut s, day(6, 1)), vec![day(6, 1)]);
    }

    #[test]
    fn canceling_now_stops_all_invoices_and_at_period_end_bills_through_the_period() {
        let mut now_canceled = sub(day(1, 1), None);
        bill_all(&mut now_canceled, day(1, 1));
        now_canceled.cancel(false, day(1, 10)).unwrap();
        assert_eq!(now_canceled.status, SS::Canceled);
        assert!(bill_all(&mut now_canceled, day(6, 1)).is_empty());
        assert_eq!(now_canceled.next_bill_at().unwrap(), None);
        assert!(matches!(now_canceled.cancel(false, day(1, 11)), Err(DomainError::IllegalTransition { .. })));

        let mut at_end = sub(day(1, 1), None);
        bill_all(&mut at_end, day(1, 1));
        at_end.cancel(true, day(1, 10)).unwrap();
        assert_eq!((at_end.status, at_end.cancel_at), (SS::Active, Some(day(2, 1))));
        // the February period starts at the cancellation time: not billed; the subscription ends
        assert!(bill_all(&mut at_end, day(3, 1)).is_empty());
        assert!(at_end.end_if_due(day(3, 1)).unwrap());
        assert_eq!((at_end.status, at_end.ended_at), (SS::Ended, Some(day(2, 1))));
    }

    #[test]
    fn a_scheduled_change_applies_from_the_next_period_and_a_second_one_conflicts() {
        let mut s = sub(day(1, 1), None);
        bill_all(&mut s, day(1, 1));
        s.schedule_change(plan("plan_b", 2000, None), day(1, 15)).unwrap();
        let err = s.schedule_change(plan("plan_c", 3000, None), day(1, 16)).unwrap_err();
        assert!(matches!(err, DomainError::Conflict { code: "change_pending", .. }));
        let due = s.due_periods(day(2, 1)).unwrap();
        assert_eq!(due[0].plan.id.as_str(), "plan_b");
        s.record_billed(due[0].period.index, day(2, 1)).unwrap();
        assert_eq!((s.plan.id.as_str(), s.pending_change.is_none()), ("plan_b", true));
    }

    #[test]
    fn changing_now_halfway_from_10_to_20_prorates_to_plus_5() {
        // GIVEN April (30 days) billed at 10.00, and a change at 00:00 on 16 April: 15 of 30 days left
        let mut s = sub(day(4, 1), None);
        bill_all(&mut s, day(4, 1));
        let halfway = day(4, 16);
        let (credit, charge) = s.change_now(plan("plan_b", 2000, None), halfway).unwrap();
        assert_eq!((credit.amount, charge.amount), (-500, 1000));
        assert_eq!(s.plan.id.as_str(), "plan_b");
    }

    #[test]
    fn subscription_transitions_follow_the_table() {
        let mut s = sub(day(1, 1), None);
        s.apply(SA::PaymentFailed).unwrap();
        assert_eq!(s.status, SS::PastDue);
        s.apply(SA::PaymentRecovered).unwrap();
        assert_eq!(s.status, SS::Active);
        let before = s.clone();
        assert!(matches!(s.apply(SA::TrialEnd), Err(DomainError::IllegalTransition { .. })));
        assert_eq!(s, before);
    }
}
