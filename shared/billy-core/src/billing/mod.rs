//! The billing pipeline's use cases: the tick that finds due periods, invoice generation (exactly
//! one per period), charging through the gateway port, applying gateway events in event-time order
//! with dunning, the retry sweep, and test-clock readiness. Every step is safe to run twice.

use crate::audit::{Actor, Context};
use crate::dunning::{DunningPolicy, FinalAction};
use crate::error::{DomainError, DomainResult};
use crate::ids::{Id, IdGenerator};
use crate::invoice::{Invoice, InvoiceStatus};
use crate::journal::InvoiceChange;
use crate::plan::Plan;
use crate::ports::{
    Changeset, Clock, InvoiceRepository, PaymentGateway, QueueMessage, QueuePublisher, SubscriptionRepository,
    TestClockRepository, UnitOfWork, Write,
};
use crate::schedule::Period;
use crate::subscription::{Subscription, SubscriptionAction, SubscriptionStatus};
use crate::tenant::Scope;
use crate::test_clock::ClockStatus;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

mod charge;
mod events;
mod generate;

pub use charge::{ChargeDeps, ChargeOutcome, charge_invoices};
pub use events::{EventDeps, EventOutcome, apply_gateway_events};
pub use generate::{GenerateDeps, generate_invoices, period_items, request_charge};

pub const BILL_PERIOD: &str = "bill_period";
pub const CHARGE_INVOICE: &str = "charge_invoice";
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
}

/// "Make attempt `attempt` to collect this invoice."
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeRequest {
    pub scope: Scope,
    pub invoice: Id,
    pub attempt: u32,
}

fn message<T: Serialize>(kind: &str, body: &T) -> DomainResult<QueueMessage> {
    Ok(QueueMessage {
        version: MESSAGE_VERSION,
        kind: kind.to_owned(),
        body: serde_json::to_value(body).map_err(DomainError::unexpected)?,
    })
}

fn system(scope: &Scope, function: &str) -> Context {
    Context { scope: scope.clone(), actor: Actor::System { function: function.to_owned() }, request_id: None }
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
/// policy: its write, its audit event and the action's name; `None` when it does not change.
fn uncollectible_consequence(
    policy: &DunningPolicy,
    ctx: &Context,
    ids: &dyn IdGenerator,
    mut sub: Subscription,
    now: DateTime<Utc>,
) -> DomainResult<Option<(Write, crate::audit::AuditEvent, &'static str)>> {
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
    Ok(Some((Write::Subscription { subscription: sub, expected: Some(expected) }, event, action)))
}

/// The charge queue's message for an invoice's current attempt.
fn charge_message(scope: &Scope, inv: &Invoice) -> DomainResult<QueueMessage> {
    message(
        CHARGE_INVOICE,
        &ChargeRequest { scope: scope.clone(), invoice: inv.id.clone(), attempt: inv.attempt_count },
    )
}

// ---------------------------------------------------------------------------------------------
// Tick

#[derive(Debug, Clone, Copy)]
pub struct TickDeps<'a> {
    pub subscriptions: &'a dyn SubscriptionRepository,
    pub unit: &'a dyn UnitOfWork,
    pub queue: &'a dyn QueuePublisher,
    pub ids: &'a dyn IdGenerator,
    pub bill_queue: &'a str,
}

/// What one subscription's tick changes: the updated subscription, its events, its messages.
struct TickPlan {
    scope: Scope,
    subscription: Subscription,
    expected: u64,
    events: Vec<crate::audit::AuditEvent>,
    messages: Vec<QueueMessage>,
}

fn plan_tick(
    deps: TickDeps<'_>,
    scope: &Scope,
    mut sub: Subscription,
    now: DateTime<Utc>,
) -> DomainResult<Option<TickPlan>> {
    let ctx = system(scope, "billing-tick");
    let expected = sub.version;
    let due = sub.due_periods(now)?;
    let mut events = Vec::new();
    let mut messages = Vec::new();
    for d in &due {
        messages.push(message(
            BILL_PERIOD,
            &BillPeriod {
                scope: scope.clone(),
                subscription: sub.id.clone(),
                customer: sub.customer.clone(),
                period: d.period,
                plan: d.plan.clone(),
                test_clock: sub.test_clock.clone(),
            },
        )?);
        let was = sub.status;
        sub.record_billed(d.period.index, now)?;
        let action = if was == SubscriptionStatus::Trialing && sub.status == SubscriptionStatus::Active {
            "subscription.trial_ended"
        } else {
            "subscription.period_billed"
        };
        events.push(subscription_event(&ctx, deps.ids, now, &sub, action, None));
    }
    if due.is_empty() && sub.end_if_due(now)? {
        events.push(subscription_event(
            &ctx,
            deps.ids,
            now,
            &sub,
            "subscription.ended",
            Some("canceled at period end"),
        ));
    }
    Ok((!events.is_empty()).then(|| TickPlan { scope: scope.clone(), subscription: sub, expected, events, messages }))
}

/// What a tick did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TickReport {
    pub periods: usize,
    pub failures: usize,
}

/// Bills every due period of these subscriptions: all bill messages are sent first (in batches),
/// then each subscription records what was sent. A crash in between re-sends them on the next tick
/// and the period claim makes the repeat a no-op, whereas recording first could lose a period. A
/// subscription changed meanwhile (a cancel, another tick) is left to the next tick.
pub async fn bill_due_subscriptions(
    deps: TickDeps<'_>,
    due: &[(Scope, Id)],
    now: DateTime<Utc>,
) -> DomainResult<TickReport> {
    let mut report = TickReport::default();
    let mut plans = Vec::new();
    let scopes: HashMap<&Id, &Scope> = due.iter().map(|(scope, id)| (id, scope)).collect();
    for sub in deps.subscriptions.get_many(due).await? {
        match scopes.get(&sub.id).map(|scope| plan_tick(deps, scope, sub, now)) {
            Some(Ok(Some(plan))) => plans.push(plan),
            Some(Ok(None)) => {}
            Some(Err(_)) | None => report.failures += 1,
        }
    }
    let messages: Vec<QueueMessage> = plans.iter().flat_map(|p| p.messages.iter().cloned()).collect();
    report.periods = messages.len();
    deps.queue.send(deps.bill_queue, &messages).await?;
    let changes = plans
        .into_iter()
        .map(|p| Changeset {
            scope: p.scope,
            writes: vec![Write::Subscription { subscription: p.subscription, expected: Some(p.expected) }],
            events: p.events,
        })
        .collect();
    // A conflict is a subscription changed meanwhile: the next tick sees it afresh.
    let commits: Vec<DomainResult<()>> = deps
        .unit
        .commit_each(changes)
        .await
        .into_iter()
        .map(|c| if matches!(c, Err(DomainError::Conflict { .. })) { Ok(()) } else { c })
        .collect();
    report.failures += commits.iter().filter(|c| c.is_err()).count();
    Ok(report)
}

// ---------------------------------------------------------------------------------------------
// Webhook reception

/// Verifies a gateway's webhook and hands it to the processing queue. Nothing is stored for a
/// webhook that fails verification. A replayed event is queued again and recognised by the
/// processor (its applied marker and the transaction's event time), which keeps this path to one
/// request.
pub async fn receive_webhook(
    gateway: &dyn PaymentGateway,
    queue: &dyn QueuePublisher,
    webhook_queue: &str,
    headers: &[(String, String)],
    body: &[u8],
    now: DateTime<Utc>,
) -> DomainResult<()> {
    let event = gateway.verify_webhook(headers, body, now).map_err(|rejection| {
        let code = match rejection {
            crate::gateway::WebhookRejection::MissingSignature => "signature_missing",
            crate::gateway::WebhookRejection::BadSignature => "signature_invalid",
            crate::gateway::WebhookRejection::Stale => "signature_stale",
            crate::gateway::WebhookRejection::Payload(_) => "payload_invalid",
        };
        DomainError::invalid(code, rejection.to_string(), None)
    })?;
    queue.send(webhook_queue, &[message(GATEWAY_EVENT, &event)?]).await
}

// ---------------------------------------------------------------------------------------------
// Retry sweep

/// Asks for the next attempt of every invoice whose retry is due. The retry itself (the
/// transition and the new transaction) is made by the charge step, so a repeated sweep is harmless.
pub async fn sweep_retries(
    invoices: &dyn InvoiceRepository,
    queue: &dyn QueuePublisher,
    charge_queue: &str,
    due: &[(Scope, Id)],
    now: DateTime<Utc>,
) -> DomainResult<usize> {
    let mut messages = Vec::new();
    for (scope, id) in due {
        let Some(inv) = invoices.get(scope, id).await? else { continue };
        let retryable = matches!(inv.status, InvoiceStatus::ChargedWithError | InvoiceStatus::PayoutFailed);
        if retryable && inv.next_attempt_at.is_some_and(|t| t <= now) {
            messages.push(message(
                CHARGE_INVOICE,
                &ChargeRequest { scope: scope.clone(), invoice: inv.id, attempt: inv.attempt_count + 1 },
            )?);
        }
    }
    queue.send(charge_queue, &messages).await?;
    Ok(messages.len())
}

// ---------------------------------------------------------------------------------------------
// Test clock readiness

/// A clock is ready when nothing due up to its frozen time is still on its way: every due period
/// of its customers' subscriptions has its invoice, no invoice waits for a gateway, and no retry
/// is due. Two queries per customer, however many subscriptions it has.
pub async fn clock_status(
    subscriptions: &dyn SubscriptionRepository,
    invoices: &dyn InvoiceRepository,
    scope: &Scope,
    clock: &crate::test_clock::TestClock,
) -> DomainResult<ClockStatus> {
    let frozen = clock.frozen_time;
    for customer in &clock.customers {
        let mut billed: HashMap<Id, u64> = HashMap::new();
        for inv in invoices.for_customer(scope, customer).await? {
            let waiting = inv.status == InvoiceStatus::Pending;
            let retry_due = matches!(inv.status, InvoiceStatus::ChargedWithError | InvoiceStatus::PayoutFailed)
                && inv.next_attempt_at.is_some_and(|t| t <= frozen);
            if waiting || retry_due {
                return Ok(ClockStatus::Advancing);
            }
            if let (Some(sub), Some(_)) = (inv.subscription, inv.period) {
                *billed.entry(sub).or_default() += 1;
            }
        }
        for sub in subscriptions.for_customer(scope, customer).await? {
            // Periods the tick recorded as billed whose invoices are not made yet are on their way.
            let invoiced = billed.get(&sub.id).copied().unwrap_or(0);
            if !sub.due_periods(frozen)?.is_empty() || invoiced < sub.next_period {
                return Ok(ClockStatus::Advancing);
            }
            if sub.next_due_at()?.is_some_and(|t| t <= frozen) {
                return Ok(ClockStatus::Advancing);
            }
        }
    }
    Ok(ClockStatus::Ready)
}
