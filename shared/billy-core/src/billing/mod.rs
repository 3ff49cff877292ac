//! The billing pipeline's use cases: the tick that finds due periods, invoice generation (exactly
//! one per period), charging through the gateways, applying gateway events in event-time order
//! with dunning, the sweeps (retries, unknown outcomes) and test-clock readiness. Every step is
//! safe to run twice, and none announces anything itself: what it commits is published from the
//! audit table's stream (the outbox).
//!
//! On a test clock every step runs at its own scheduled time (a period at its start, an attempt
//! at its dunning time), not at the clock's new time, so a jump of several weeks runs each
//! intermediate step in turn, as Stripe's test clocks do.

use crate::audit::{Actor, Change, Context};
use crate::dunning::{DunningPolicy, FinalAction};
use crate::error::{DomainError, DomainResult};
use crate::gateway::{GatewayEvent, GatewayEventKind, LookupResult, WebhookRejection};
use crate::ids::{Id, IdGenerator};
use crate::invoice::{Invoice, InvoiceStatus};
use crate::journal::InvoiceChange;
use crate::plan::{Direction, Plan};
use crate::ports::{Changeset, Clock, Ports, QueueMessage, TestClockRepository, Write};
use crate::schedule::Period;
use crate::settings::TenantSettings;
use crate::subscription::{Subscription, SubscriptionAction, SubscriptionStatus};
use crate::tenant::Scope;
use crate::test_clock::{ClockFailure, ClockStatus, TestClock};
use crate::transaction::{NO_RECORD_AFTER_MINUTES, Transaction};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

mod charge;
mod events;
mod generate;
mod settle;
mod verify;

pub use charge::{ChargeOutcome, charge_invoices, pay_out_invoices};
pub use events::{EventOutcome, apply_gateway_events};
pub use generate::{generate_invoices, period_items};
pub use settle::run_settlements;
pub use verify::{request_verification, run_verification};

pub const BILL_PERIOD: &str = "bill_period";
pub const CHARGE_INVOICE: &str = "charge_invoice";
/// A payout invoice's attempt: the same request, on the payout pipeline's own queue.
pub const PAY_OUT_INVOICE: &str = "pay_out_invoice";
pub const GATEWAY_EVENT: &str = "gateway_event";
/// Versions of the message bodies above that this code writes and reads.
pub const MESSAGE_VERSION: u32 = 1;

/// "Bill this period of this subscription": everything generation needs, frozen at tick time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillPeriod {
    pub scope: Scope,
    pub subscription: Id,
    pub customer: Id,
    pub period: Period,
    pub plan: Plan,
    pub test_clock: Option<Id>,
    /// The subscription's coupon, when this invoice is one it discounts.
    #[serde(default)]
    pub discount: Option<crate::coupon::Coupon>,
    /// One-off items added to the subscription for its next invoice.
    #[serde(default)]
    pub items: Vec<crate::invoice::InvoiceItem>,
}

impl BillPeriod {
    /// When the period is billed: at its start (fixed prices, in advance), at its end (a fixed
    /// payout), or when it stops taking usage (metered plans, in arrears).
    pub fn due_at(&self) -> DateTime<Utc> {
        Subscription::due_at(&self.plan, &self.period)
    }
}

/// "Make attempt `attempt` to collect (or pay out) this invoice."
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeRequest {
    pub scope: Scope,
    pub invoice: Id,
    pub attempt: u32,
}

impl ChargeRequest {
    /// The message for this request on its pipeline's queue: the charge queue for a debit, the
    /// payout queue for a payout.
    pub fn message_for(&self, direction: Direction) -> DomainResult<QueueMessage> {
        match direction {
            Direction::Debit => message(CHARGE_INVOICE, self),
            Direction::Payout => message(PAY_OUT_INVOICE, self),
        }
    }

    /// Which pipeline an announced invoice belongs to (an invoice's snapshot names its direction).
    pub fn direction_announced(event: &crate::ports::DomainEvent) -> Direction {
        if event.data["object"]["direction"] == "payout" { Direction::Payout } else { Direction::Debit }
    }

    /// The request an announced invoice event asks for: a finalized invoice's first attempt, or
    /// (after a failure) its next one, which the charge step makes only once it is due.
    pub fn from_announcement(event: &crate::ports::DomainEvent) -> Option<Self> {
        use crate::events::EventType;
        let object = &event.data["object"];
        let invoice = Id::from_trusted(object["id"].as_str()?.to_owned());
        let attempts = u32::try_from(object["attempt_count"].as_u64()?).ok()?;
        let attempt = match event.kind {
            EventType::InvoiceFinalized => attempts,
            EventType::InvoicePaymentFailed | EventType::PayoutFailed | EventType::PayoutRetryScheduled => attempts + 1,
            _ => return None,
        };
        Some(Self { scope: event.scope.clone(), invoice, attempt })
    }
}

/// Each scope's settings, read once per batch.
pub(crate) async fn settings_for<'s>(
    p: &Ports<'_>,
    scopes: impl Iterator<Item = &'s Scope>,
) -> DomainResult<HashMap<Scope, TenantSettings>> {
    let mut out = HashMap::new();
    for scope in scopes {
        if !out.contains_key(scope) {
            out.insert(scope.clone(), p.settings.get(scope).await?);
        }
    }
    Ok(out)
}

fn message<T: Serialize>(kind: &str, body: &T) -> DomainResult<QueueMessage> {
    Ok(QueueMessage {
        version: MESSAGE_VERSION,
        kind: kind.to_owned(),
        body: serde_json::to_value(body).map_err(DomainError::unexpected)?,
    })
}

fn system(scope: &Scope, function: &str) -> Context {
    Context::new(scope.clone(), Actor::System { function: function.to_owned() }, None)
}

/// What time it is for this scope: the test clock's frozen time, or the real clock.
pub async fn now_for(
    clocks: &dyn TestClockRepository,
    clock: &dyn Clock,
    scope: &Scope,
    test_clock: Option<&Id>,
) -> DomainResult<DateTime<Utc>> {
    BatchTime::read(clocks, clock, std::iter::once((scope, test_clock))).await?.now(test_clock)
}

/// What time it is for every item of a batch: the real clock, or the frozen time of the test
/// clock an item belongs to. The clocks are read once per batch, together.
#[derive(Debug, Clone)]
pub struct BatchTime {
    real: DateTime<Utc>,
    frozen: HashMap<Id, DateTime<Utc>>,
}

impl BatchTime {
    pub async fn read<'a>(
        clocks: &dyn TestClockRepository,
        clock: &dyn Clock,
        items: impl Iterator<Item = (&'a Scope, Option<&'a Id>)>,
    ) -> DomainResult<Self> {
        let mut keys: Vec<(Scope, Id)> = items.filter_map(|(s, c)| Some((s.clone(), c?.clone()))).collect();
        keys.sort_by(|a, b| a.1.cmp(&b.1));
        keys.dedup_by(|a, b| a.1 == b.1);
        let frozen = if keys.is_empty() {
            HashMap::new()
        } else {
            clocks.get_many(&keys).await?.into_iter().map(|c| (c.id, c.frozen_time)).collect()
        };
        Ok(Self { real: clock.now(), frozen })
    }

    pub fn now(&self, test_clock: Option<&Id>) -> DomainResult<DateTime<Utc>> {
        match test_clock {
            None => Ok(self.real),
            Some(id) => self
                .frozen
                .get(id)
                .copied()
                .ok_or_else(|| DomainError::unexpected(format!("test clock {id} is missing"))),
        }
    }

    /// When a step scheduled at `scheduled` happens: in real time, now (a late step is recorded
    /// when it really ran); on a test clock, at its own scheduled time (never after the clock's).
    pub fn step_time(&self, test_clock: Option<&Id>, scheduled: Option<DateTime<Utc>>) -> DomainResult<DateTime<Utc>> {
        let now = self.now(test_clock)?;
        Ok(match (test_clock, scheduled) {
            (Some(_), Some(at)) => at.min(now),
            _ => now,
        })
    }
}

/// The transaction of the invoice's current collection attempt, if it was made: the one the
/// invoice names, else the one its attempt claim names (an attempt counted before invoices named
/// theirs, or made by an earlier version while a stack was being updated).
pub(crate) async fn attempt_made(p: &Ports<'_>, scope: &Scope, inv: &Invoice) -> DomainResult<Option<Transaction>> {
    if inv.attempt_count == 0 {
        return Ok(None);
    }
    if let Some(id) = &inv.attempt_transaction
        && let Some(named) = p.transactions.get(scope, id).await?
    {
        return Ok(Some(named));
    }
    p.transactions.for_attempt(scope, &inv.id, inv.transaction_type(), inv.attempt_count).await
}

/// A new transaction for the invoice's current collection attempt, made at `at`, under the id the
/// invoice names (an attempt counted before invoices named theirs gets a new id). Its `created`
/// is when the step runs, which the gateway's answers are timed from (the look-up after a lost
/// answer, the time a failure is recorded and a retry scheduled from); a named id carries the time
/// the attempt was counted, at or before that.
pub(crate) fn attempt_transaction(p: &Ports<'_>, inv: &Invoice, at: DateTime<Utc>) -> Transaction {
    let id = inv.attempt_transaction.clone().unwrap_or_else(|| p.ids.next(crate::ids::IdKind::Transaction));
    Transaction::for_invoice(id, inv, inv.transaction_type(), inv.attempt_count, inv.total, at)
}

/// The writes that create the invoice's attempt `transaction`: under the id the invoice names, its
/// creation is the attempt's claim; otherwise a claim goes with it.
pub(crate) fn create_attempt(inv: &Invoice, transaction: Transaction) -> Vec<Write> {
    let claim = inv.attempt_transaction.is_none().then(|| Write::AttemptClaim { transaction: transaction.clone() });
    std::iter::once(Write::Transaction { transaction, expected: None }).chain(claim).collect()
}

/// Per-item results of a batch step; a failure of the batch as a whole is every item's failure.
fn per_item<T>(len: usize, batch: DomainResult<Vec<DomainResult<T>>>) -> Vec<DomainResult<T>> {
    batch.unwrap_or_else(|e| (0..len).map(|_| Err(e.clone())).collect())
}

fn invoice_event(
    ctx: &Context,
    ids: &dyn IdGenerator,
    at: DateTime<Utc>,
    inv: &Invoice,
    action: &'static str,
    change: &InvoiceChange,
) -> DomainResult<crate::audit::AuditEvent> {
    let mut event = ctx.snapshot(ids, at, action, inv);
    event.change = Some(serde_json::to_value(change).map_err(DomainError::unexpected)?);
    Ok(event)
}

fn subscription_event(
    ctx: &Context,
    ids: &dyn IdGenerator,
    at: DateTime<Utc>,
    sub: &Subscription,
    action: &'static str,
    reason: Option<&str>,
) -> crate::audit::AuditEvent {
    ctx.snapshot(ids, at, action, sub).because(reason)
}

/// What happens to a subscription when one of its invoices became uncollectible, per the dunning
/// policy: its write and its audit event; `None` when it does not change.
fn uncollectible_consequence(
    policy: &DunningPolicy,
    ctx: &Context,
    ids: &dyn IdGenerator,
    mut sub: Subscription,
    now: DateTime<Utc>,
) -> DomainResult<Option<(Write, crate::audit::AuditEvent)>> {
    if !sub.status.is_live() {
        return Ok(None);
    }
    let expected = sub.version;
    match policy.final_action {
        FinalAction::PastDue if sub.status == SubscriptionStatus::PastDue => return Ok(None),
        FinalAction::PastDue => sub.apply(SubscriptionAction::PaymentFailed).map(|_| ())?,
        FinalAction::Cancel => sub.cancel(false, now)?,
    }
    let action =
        if sub.status == SubscriptionStatus::Canceled { "subscription.canceled" } else { "subscription.past_due" };
    let event = subscription_event(ctx, ids, now, &sub, action, Some("an invoice is uncollectible"));
    Ok(Some((Write::Subscription { subscription: sub, expected: Some(expected) }, event)))
}

/// One item of a batch step that could not be done, naming what it was about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepFailure {
    pub scope: Scope,
    pub subject: Id,
    pub error: DomainError,
}

impl StepFailure {
    pub fn log(&self, step: &str) {
        tracing::warn!(step, scope = %self.scope, subject = %self.subject, error = %self.error,
            retryable = self.error.is_retryable(), "step failed for one item; the others went on");
    }
}

/// Records on a test clock that one of its steps failed for good, so the clock says so (status
/// `internal_failure` and the reason) instead of advancing for ever. An audit note: it changes no
/// state, and any number of steps may record one at once.
pub async fn record_clock_failure(
    p: &Ports<'_>,
    scope: &Scope,
    clock: &Id,
    step: &str,
    subject: &Id,
    reason: &str,
) -> DomainResult<()> {
    let Some(test_clock) = p.clocks.get(scope, clock).await? else { return Ok(()) };
    let failure = ClockFailure {
        step: step.to_owned(),
        subject: subject.clone(),
        reason: reason.to_owned(),
        frozen_time: test_clock.frozen_time,
    };
    let ctx = system(scope, step);
    let note = ctx.record(
        p.ids,
        p.clock.now(),
        Change {
            entity: clock,
            entity_type: "test_clock",
            account: None,
            action: "test_clock.step_failed",
            version: 0,
            reason: Some(reason),
            before: None,
            after: Some(&failure),
            change: None,
        },
    );
    p.unit.commit(scope, Vec::new(), vec![note]).await
}

// ---------------------------------------------------------------------------------------------
// Tick

/// What one subscription's tick changes: the updated subscription, its events, its messages.
struct TickPlan {
    scope: Scope,
    subscription: Subscription,
    expected: u64,
    events: Vec<crate::audit::AuditEvent>,
    messages: Vec<QueueMessage>,
}

fn plan_tick(
    ids: &dyn IdGenerator,
    scope: &Scope,
    mut sub: Subscription,
    now: DateTime<Utc>,
) -> DomainResult<Option<TickPlan>> {
    let ctx = system(scope, "billing-tick");
    let expected = sub.version;
    let due = sub.due_periods(now)?;
    let mut events = Vec::new();
    let mut messages = Vec::new();
    // Each notice is announced at its own time, before what it announces (a test clock's jump
    // over several renewals announces each of them in turn). In real time a notice whose moment
    // has passed (after an outage, or for a subscription made before notices existed) is dropped:
    // announcing a renewal as it happens tells nobody anything.
    let on_test_clock = sub.test_clock.is_some();
    let on_clock = |at: DateTime<Utc>| if on_test_clock { at.min(now) } else { now };
    if !on_test_clock && sub.trial_notice_at().is_some() && sub.trial_end.is_some_and(|end| now >= end) {
        sub.trial_notice_announced = true;
    }
    if let Some(notice) = sub.trial_notice_at()
        && sub.take_trial_notice(now)
    {
        let at = on_clock(notice);
        events.push(subscription_event(
            &ctx,
            ids,
            at,
            &sub,
            "subscription.trial_will_end",
            Some("its trial ends within three days"),
        ));
    }
    let upcoming = |sub: &Subscription, at| {
        subscription_event(&ctx, ids, at, sub, "invoice.upcoming", Some("it renews within three days"))
    };
    for (n, d) in due.iter().enumerate() {
        if let Some(notice) = sub.upcoming_notice_at(d.period.index)? {
            if on_test_clock {
                sub.take_upcoming_notice(d.period.index);
                events.push(upcoming(&sub, on_clock(notice)));
            } else {
                // Billed now: too late to announce (the billing below changes the version anyway).
                sub.upcoming_announced = Some(d.period.index);
            }
        }
        // A coupon counts the invoices it discounts; one-off items go on the first invoice made.
        let discount = if d.plan.kind.direction() == crate::plan::Direction::Debit {
            sub.discount.as_mut().and_then(crate::coupon::Discount::take)
        } else {
            None
        };
        let items = if n == 0 { std::mem::take(&mut sub.pending_items) } else { Vec::new() };
        let bill = BillPeriod {
            scope: scope.clone(),
            subscription: sub.id.clone(),
            customer: sub.customer.clone(),
            period: d.period,
            plan: d.plan.clone(),
            test_clock: sub.test_clock.clone(),
            discount,
            items,
        };
        // On a test clock each period is billed at its own time.
        let at = if sub.test_clock.is_some() { bill.due_at().min(now) } else { now };
        messages.push(message(BILL_PERIOD, &bill)?);
        let was = sub.status;
        let swapped = sub.record_billed(d.period.index, at)?;
        let (action, reason) = if was == SubscriptionStatus::Trialing && sub.status == SubscriptionStatus::Active {
            ("subscription.trial_ended", None)
        } else if swapped {
            ("subscription.plan_changed", Some("the scheduled plan change applies from this period"))
        } else {
            ("subscription.period_billed", None)
        };
        events.push(subscription_event(&ctx, ids, at, &sub, action, reason));
    }
    if let Some(notice) = sub.upcoming_notice_at(sub.next_period)?
        && notice <= now
    {
        sub.take_upcoming_notice(sub.next_period);
        events.push(upcoming(&sub, on_clock(notice)));
    }
    if let Some(notice) = sub.ending_notice_at()
        && sub.take_ending_notice(now)
    {
        let at = if sub.test_clock.is_some() { notice.min(now) } else { now };
        events.push(subscription_event(
            &ctx,
            ids,
            at,
            &sub,
            "subscription.ending",
            Some("its term ends within a week"),
        ));
    }
    if due.is_empty() && sub.end_if_due(now)? {
        let at = sub.ended_at.unwrap_or(now);
        events.push(subscription_event(&ctx, ids, at, &sub, "subscription.ended", Some("canceled at period end")));
    }
    Ok((!events.is_empty()).then(|| TickPlan { scope: scope.clone(), subscription: sub, expected, events, messages }))
}

/// What a tick did: periods sent for billing, and each subscription it could not bill.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    pub periods: usize,
    pub failed: Vec<StepFailure>,
}

/// Bills every due period of these subscriptions: all bill messages are sent first (in batches),
/// then each subscription records what was sent. A crash in between re-sends them on the next tick
/// and the period claim makes the repeat a no-op, whereas recording first could lose a period. A
/// subscription changed meanwhile (a cancel, another tick) is left to the next tick. One that
/// cannot be billed is reported by id and never stops the others.
pub async fn bill_due_subscriptions(
    p: &Ports<'_>,
    due: &[(Scope, Id)],
    now: DateTime<Utc>,
) -> DomainResult<TickReport> {
    let mut report = TickReport::default();
    let mut plans = Vec::new();
    let scopes: HashMap<&Id, &Scope> = due.iter().map(|(scope, id)| (id, scope)).collect();
    for sub in p.subscriptions.get_many(due).await? {
        let Some(scope) = scopes.get(&sub.id).copied() else { continue };
        let id = sub.id.clone();
        match plan_tick(p.ids, scope, sub, now) {
            Ok(Some(plan)) => plans.push(plan),
            Ok(None) => {}
            Err(error) => report.failed.push(StepFailure { scope: scope.clone(), subject: id, error }),
        }
    }
    let messages: Vec<QueueMessage> = plans.iter().flat_map(|p| p.messages.iter().cloned()).collect();
    report.periods = messages.len();
    p.queue.send(p.queues.bill()?, &messages).await?;
    let subjects: Vec<(Scope, Id)> = plans.iter().map(|t| (t.scope.clone(), t.subscription.id.clone())).collect();
    let changes = plans
        .into_iter()
        .map(|t| Changeset {
            scope: t.scope,
            writes: vec![Write::Subscription { subscription: t.subscription, expected: Some(t.expected) }],
            events: t.events,
        })
        .collect();
    for ((scope, subject), committed) in subjects.into_iter().zip(p.unit.commit_each(changes).await) {
        match committed {
            // A conflict is a subscription changed meanwhile: the next tick sees it afresh.
            Ok(()) | Err(DomainError::Conflict { .. }) => {}
            Err(error) => report.failed.push(StepFailure { scope, subject, error }),
        }
    }
    Ok(report)
}

/// Bills what is due on one test clock at its frozen time; a subscription that cannot be billed
/// is recorded on the clock (its status then says so) and the others go on.
pub async fn bill_clock(p: &Ports<'_>, clock: &TestClock, scope: &Scope) -> DomainResult<TickReport> {
    let due = p.clocks.due_subscriptions(&clock.id, clock.frozen_time).await?;
    let report = bill_due_subscriptions(p, &due, clock.frozen_time).await?;
    for failure in report.failed.iter().filter(|f| !f.error.is_retryable()) {
        record_clock_failure(p, scope, &clock.id, "billing-tick", &failure.subject, &failure.error.to_string()).await?;
    }
    Ok(report)
}

// ---------------------------------------------------------------------------------------------
// Webhook reception

/// Verifies a gateway's webhook and hands its events to the processing queue; answers what the
/// gateway expects back. `account` is the tenant account a webhook address names (the sandbox,
/// shared by the deployment, has none): its events may only touch that tenant. Nothing is stored
/// for a webhook that fails verification. A replayed event is queued again and recognised by the
/// processor (the transaction's event time), which keeps this path to one request.
pub async fn receive_webhook(
    p: &Ports<'_>,
    gateway: &str,
    account: Option<&str>,
    headers: &[(String, String)],
    body: &[u8],
) -> DomainResult<&'static str> {
    let (adapter, scope) = match account {
        None => (p.gateways.deployment(gateway).ok_or_else(|| DomainError::not_found("gateway", gateway))?, None),
        Some(raw) => {
            let id = Id::parse(crate::ids::IdKind::GatewayAccount, raw, "")?;
            let (scope, adapter) =
                p.gateways.for_account(&id).await?.ok_or_else(|| DomainError::not_found("gateway_account", raw))?;
            if adapter.name() != gateway {
                return Err(DomainError::not_found("gateway_account", raw));
            }
            (adapter, Some(scope))
        }
    };
    let mut events = adapter
        .verify_webhook(headers, body, p.clock.now())
        .map_err(|rejection: WebhookRejection| DomainError::invalid(rejection.code(), rejection.to_string(), None))?;
    for event in &mut events {
        event.account_scope = scope.as_ref().map(Scope::key);
    }
    let messages: Vec<QueueMessage> = events.iter().map(|e| message(GATEWAY_EVENT, e)).collect::<DomainResult<_>>()?;
    p.queue.send(p.queues.webhook()?, &messages).await?;
    Ok(adapter.webhook_answer())
}

// ---------------------------------------------------------------------------------------------
// Sweeps

/// Asks for the next attempt of every invoice whose retry is due. The retry itself (the
/// transition and the new transaction) is made by the charge step, so a repeated sweep is harmless.
pub async fn sweep_retries(p: &Ports<'_>, due: &[(Scope, Id)], now: DateTime<Utc>) -> DomainResult<usize> {
    let mut by_pipeline: HashMap<Direction, Vec<QueueMessage>> = HashMap::new();
    for inv in p.invoices.get_many(due).await? {
        if inv.retry_due(now) {
            let scope = due.iter().find(|(_, id)| *id == inv.id).map(|(s, _)| s.clone());
            let Some(scope) = scope else { continue };
            let request = ChargeRequest { scope, invoice: inv.id.clone(), attempt: inv.attempt_count + 1 };
            by_pipeline.entry(inv.direction).or_default().push(request.message_for(inv.direction)?);
        }
    }
    let mut asked = 0;
    for (direction, messages) in by_pipeline {
        p.queue.send(p.queues.for_direction(direction)?, &messages).await?;
        asked += messages.len();
    }
    Ok(asked)
}

/// Looks up, at their gateways, transactions whose outcome was lost, and hands what the gateways
/// say to the webhook queue as gateway events, to be applied like webhooks. A transaction is never
/// sent again: a gateway with no record of it long after the attempt never received it, and the
/// attempt fails (`gateway_no_record`), so dunning can make the next one.
pub async fn sweep_unknown(p: &Ports<'_>, due: &[(Scope, Id)], now: DateTime<Utc>) -> DomainResult<usize> {
    let mut messages = Vec::new();
    for txn in p.transactions.get_many(due).await? {
        if txn.recheck_at().is_none_or(|at| at > now) {
            continue;
        }
        let scope = due.iter().find(|(_, id)| *id == txn.id).map(|(s, _)| s.clone());
        let Some(scope) = scope else { continue };
        let registry = p.gateways.for_scope(&scope).await?;
        let Some(gateway) = registry.get(&txn.gateway) else {
            tracing::warn!(transaction = %txn.id, gateway = %txn.gateway, "no adapter to look up an unknown outcome");
            continue;
        };
        match gateway.lookup(txn.id.as_str(), &txn.idempotency_key).await {
            Ok(found) => {
                if let Some(event) = lookup_event(&scope, &txn, found, now) {
                    messages.push(message(GATEWAY_EVENT, &event)?);
                }
            }
            // The gateway is still out of reach: the next sweep asks again.
            Err(e) => tracing::warn!(transaction = %txn.id, error = %e, "look-up failed; will ask again"),
        }
    }
    p.queue.send(p.queues.webhook()?, &messages).await?;
    Ok(messages.len())
}

/// The gateway event a look-up amounts to, if it settles anything.
fn lookup_event(scope: &Scope, txn: &Transaction, found: LookupResult, now: DateTime<Utc>) -> Option<GatewayEvent> {
    use crate::transaction::TransactionType as T;
    let (succeeded, failed) = match txn.kind {
        T::Payout => (GatewayEventKind::PayoutPaid, GatewayEventKind::PayoutFailed),
        T::Refund => (GatewayEventKind::RefundSucceeded, GatewayEventKind::RefundFailed),
        T::Charge | T::Chargeback => (GatewayEventKind::ChargeSucceeded, GatewayEventKind::ChargeFailed),
    };
    let (kind, reference, code) = match found {
        LookupResult::Pending { .. } => return None,
        LookupResult::NotFound if now < txn.created + chrono::Duration::minutes(NO_RECORD_AFTER_MINUTES) => {
            return None;
        }
        LookupResult::NotFound => (failed, String::new(), Some("gateway_no_record".to_owned())),
        LookupResult::Succeeded { reference } => (succeeded, reference, None),
        LookupResult::Failed { reference, code } => (failed, reference, Some(code)),
    };
    Some(GatewayEvent {
        gateway: txn.gateway.clone(),
        id: format!("lookup:{}", txn.id),
        kind,
        reference,
        transaction: Some(txn.id.to_string()),
        scope: Some(scope.key()),
        amount: Some(txn.amount),
        failure_code: code,
        account_scope: None,
        occurred_at: now,
    })
}

// ---------------------------------------------------------------------------------------------
// Test clock readiness

/// Whether a pending invoice's current attempt has an unknown outcome: Billy has nothing of its
/// own on the way for it, only a look-up, which the sweeper makes at every advance of the clock
/// past the attempt's recheck time until the gateway's answer settles it (a late webhook may
/// settle it first). Such an invoice does not hold its clock: holding it would stop the very
/// advance that brings the look-up.
async fn outcome_unknown(p: &Ports<'_>, scope: &Scope, inv: &Invoice) -> DomainResult<bool> {
    Ok(attempt_made(p, scope, inv).await?.is_some_and(|t| t.recheck_at().is_some()))
}

/// A clock is ready when nothing due up to its frozen time is still on its way: every due period
/// of its customers' subscriptions has its invoice, no invoice waits for a gateway (one whose
/// outcome was lost waits for a look-up, made as the clock moves on: see `outcome_unknown`), and
/// no retry is due. Once the rest has settled, a step at its current time that failed for good makes it
/// `internal_failure`, with the reasons.
/// Two queries per customer, however many subscriptions it has, one for its journal, and one read
/// per pending invoice whose attempt was made (two until then: its attempt claim is read too).
pub async fn clock_status(
    p: &Ports<'_>,
    scope: &Scope,
    clock: &TestClock,
) -> DomainResult<(ClockStatus, Vec<ClockFailure>)> {
    let failures: Vec<ClockFailure> = p
        .audit
        .for_entity(scope, &clock.id)
        .await?
        .into_iter()
        .filter(|e| e.action == "test_clock.step_failed")
        .filter_map(|e| serde_json::from_value::<ClockFailure>(e.after?).ok())
        .filter(|f| f.frozen_time == clock.frozen_time)
        .collect();
    let frozen = clock.frozen_time;
    for customer in &clock.customers {
        let mut billed: HashMap<Id, u64> = HashMap::new();
        for inv in p.invoices.for_customer(scope, customer).await? {
            let waits_for_gateway = inv.status == InvoiceStatus::Pending && !outcome_unknown(p, scope, &inv).await?;
            if waits_for_gateway || inv.retry_due(frozen) {
                return Ok((ClockStatus::Advancing, failures));
            }
            if let (Some(sub), Some(_)) = (inv.subscription, inv.period) {
                *billed.entry(sub).or_default() += 1;
            }
        }
        for sub in p.subscriptions.for_customer(scope, customer).await? {
            // Periods the tick recorded as billed whose invoices are not made yet are on their way.
            // (A subscription whose schedule cannot be worked out is not waited for: the tick
            // records its failure on the clock.)
            let Ok(due) = sub.due_periods(frozen) else { continue };
            let invoiced = billed.get(&sub.id).copied().unwrap_or(0);
            if !due.is_empty() || invoiced < sub.next_period {
                return Ok((ClockStatus::Advancing, failures));
            }
            if sub.next_due_at().ok().flatten().is_some_and(|t| t <= frozen) {
                return Ok((ClockStatus::Advancing, failures));
            }
        }
    }
    // Everything else has settled: a step that failed for good is why the clock is not ready.
    let status = if failures.is_empty() { ClockStatus::Ready } else { ClockStatus::InternalFailure };
    Ok((status, failures))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FixedClock;
    use crate::ids::{Id, IdKind, RandomIds};
    use crate::subscription::test_subscription;
    use crate::tenant::Mode;
    use chrono::TimeZone;

    fn day(m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, m, d, 0, 0, 0).unwrap()
    }

    fn scope() -> Scope {
        Scope::new(Id::derived(IdKind::Tenant, day(1, 1), "t"), Mode::Test)
    }

    /// The actions a tick at `now` records, with their times; and the subscription after it.
    fn tick(sub: Subscription, now: DateTime<Utc>) -> (Vec<(String, DateTime<Utc>)>, Subscription) {
        let ids = RandomIds::new(FixedClock::new(now));
        match plan_tick(&ids, &scope(), sub.clone(), now).unwrap() {
            Some(plan) => (plan.events.iter().map(|e| (e.action.clone(), e.at)).collect(), plan.subscription),
            None => (Vec::new(), sub),
        }
    }

    #[test]
    fn an_attempt_the_invoice_names_is_created_without_a_claim_an_older_one_with_its_claim() {
        use crate::invoice::{InvoiceAction, InvoiceItem, test_draft};
        let mut inv = test_draft(Direction::Debit, crate::money::Currency::parse("usd", "c").unwrap(), day(1, 1));
        inv.add_items(vec![InvoiceItem::new("Pro", 1, 1000).unwrap()]).unwrap();
        inv.apply(InvoiceAction::Finalize, day(1, 1)).unwrap();
        let named = inv.attempt_transaction.clone().unwrap();
        let made = Transaction::for_invoice(named.clone(), &inv, inv.transaction_type(), 1, inv.total, day(1, 1));
        // GIVEN an invoice that names its attempt: the transaction alone, under that id
        let writes = create_attempt(&inv, made.clone());
        assert!(
            matches!(&writes[..], [Write::Transaction { transaction, expected: None }] if transaction.id == named),
            "{writes:?}"
        );
        // GIVEN one whose attempt was counted before invoices named theirs: the claim goes with it
        inv.attempt_transaction = None;
        let writes = create_attempt(&inv, made);
        assert!(
            matches!(&writes[..], [Write::Transaction { .. }, Write::AttemptClaim { transaction }] if transaction.attempt == 1),
            "{writes:?}"
        );
    }

    #[test]
    fn a_renewal_is_announced_three_days_ahead_once() {
        // GIVEN a monthly subscription started 1 January, its first period billed
        let (_, sub) = tick(test_subscription(day(1, 1), None), day(1, 1));
        // THEN it is next due on 29 January, three days before its renewal
        assert_eq!(sub.next_due_at().unwrap(), Some(day(1, 29)));
        // WHEN the tick runs then
        let (events, sub) = tick(sub, day(1, 29));
        // THEN invoice.upcoming is announced, nothing billed, and it is next due at the renewal
        assert_eq!(events, vec![("invoice.upcoming".to_owned(), day(1, 29))]);
        assert_eq!((sub.next_period, sub.next_due_at().unwrap()), (1, Some(day(2, 1))));
        // AND a second tick announces nothing more
        assert!(tick(sub.clone(), day(1, 30)).0.is_empty());
        let (events, _) = tick(sub, day(2, 1));
        assert_eq!(events, vec![("subscription.period_billed".to_owned(), day(2, 1))]);
    }

    #[test]
    fn a_test_clock_jump_over_renewals_announces_each_at_its_own_time_before_its_bill() {
        let mut sub = test_subscription(day(1, 1), None);
        sub.test_clock = Some(Id::derived(IdKind::TestClock, day(1, 1), "c"));
        let (_, sub) = tick(sub, day(1, 1));
        // WHEN the clock jumps from 1 January to 15 March
        let (events, sub) = tick(sub, day(3, 15));
        // THEN each renewal's notice precedes its bill, each at its own time
        let expected = [
            ("invoice.upcoming", day(1, 29)),
            ("subscription.period_billed", day(2, 1)),
            ("invoice.upcoming", day(2, 26)),
            ("subscription.period_billed", day(3, 1)),
        ];
        assert_eq!(events, expected.map(|(a, t)| (a.to_owned(), t)).to_vec());
        // AND April's is announced on 29 March
        assert_eq!(sub.next_due_at().unwrap(), Some(day(3, 29)));
    }

    #[test]
    fn in_real_time_a_notice_whose_moment_passed_is_dropped_not_sent_late() {
        // GIVEN a subscription billed on 1 January, whose tick next runs on 2 February (an outage)
        let (_, sub) = tick(test_subscription(day(1, 1), None), day(1, 1));
        let (events, sub) = tick(sub, day(2, 2));
        // THEN February is billed without a notice after the fact, and March's comes on time
        assert_eq!(events, vec![("subscription.period_billed".to_owned(), day(2, 2))]);
        assert_eq!(sub.next_due_at().unwrap(), Some(day(2, 26)));
        // AND a trial whose end passed is not announced as ending
        let (events, _) = tick(test_subscription(day(3, 1), Some(14)), day(3, 16));
        assert_eq!(events, vec![("subscription.trial_ended".to_owned(), day(3, 16))]);
    }

    #[test]
    fn a_trials_end_is_announced_three_days_ahead_and_a_short_trials_at_once() {
        let (events, sub) = tick(test_subscription(day(3, 1), Some(14)), day(3, 12));
        assert_eq!(events, vec![("subscription.trial_will_end".to_owned(), day(3, 12))]);
        assert!(tick(sub, day(3, 13)).0.is_empty());
        let (events, _) = tick(test_subscription(day(3, 1), Some(2)), day(3, 1));
        assert_eq!(events, vec![("subscription.trial_will_end".to_owned(), day(3, 1))]);
    }
}
