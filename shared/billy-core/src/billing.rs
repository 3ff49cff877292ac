//! The billing pipeline's use cases: the tick that finds due periods, invoice generation (exactly
//! one per period), charging through the gateway port, applying gateway events in event-time order
//! with dunning, the retry sweep, and test-clock readiness. Every step is safe to run twice.

use crate::audit::{Actor, Change, Context};
use crate::dunning::{DunningPolicy, FinalAction};
use crate::error::{DomainError, DomainResult};
use crate::gateway::{GatewayEvent, GatewayEventKind, GatewayResponse, MoneyMovement, PaymentGateway};
use crate::ids::{Id, IdGenerator, IdKind};
use crate::invoice::{Invoice, InvoiceAction, InvoiceItem, InvoiceStatus};
use crate::journal::{self, InvoiceChange};
use crate::money::Money;
use crate::payment_method::{PaymentMethod, method_for_charge};
use crate::plan::{Plan, PlanKind};
use crate::ports::{
    Clock, CustomerRepository, DomainEvent, EventBus, InvoiceRepository, PaymentMethodRepository, QueueMessage,
    QueuePublisher, SubscriptionRepository, TestClockRepository, TransactionRepository, UnitOfWork, Write,
};
use crate::schedule::Period;
use crate::subscription::{Subscription, SubscriptionAction, SubscriptionStatus};
use crate::tenant::Scope;
use crate::test_clock::ClockStatus;
use crate::transaction::{Transaction, TransactionStatus, TransactionType};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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
    match test_clock {
        None => Ok(clock.now()),
        Some(id) => clocks
            .get(scope, id)
            .await?
            .map(|c| c.frozen_time)
            .ok_or_else(|| DomainError::unexpected(format!("test clock {id} is missing"))),
    }
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

/// How many subscriptions a tick reads and commits at once.
const TICK_CONCURRENCY: usize = 16;

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
    use futures::stream::{self, StreamExt};
    let planned: Vec<DomainResult<Option<TickPlan>>> = stream::iter(due.to_vec())
        .map(|(scope, id)| async move {
            match deps.subscriptions.get(&scope, &id).await? {
                Some(sub) => plan_tick(deps, &scope, sub, now),
                None => Ok(None),
            }
        })
        .buffer_unordered(TICK_CONCURRENCY)
        .collect()
        .await;
    let mut report = TickReport::default();
    let mut plans = Vec::new();
    for p in planned {
        match p {
            Ok(Some(plan)) => plans.push(plan),
            Ok(None) => {}
            Err(_) => report.failures += 1,
        }
    }
    let messages: Vec<QueueMessage> = plans.iter().flat_map(|p| p.messages.iter().cloned()).collect();
    report.periods = messages.len();
    deps.queue.send(deps.bill_queue, &messages).await?;
    let commits: Vec<DomainResult<()>> = stream::iter(plans)
        .map(|p| async move {
            let writes = vec![Write::Subscription { subscription: p.subscription, expected: Some(p.expected) }];
            match deps.unit.commit(&p.scope, writes, p.events).await {
                Ok(()) | Err(DomainError::Conflict { .. }) => Ok(()),
                Err(e) => Err(e),
            }
        })
        .buffer_unordered(TICK_CONCURRENCY)
        .collect()
        .await;
    report.failures += commits.iter().filter(|c| c.is_err()).count();
    Ok(report)
}

// ---------------------------------------------------------------------------------------------
// Generate

#[derive(Debug, Clone, Copy)]
pub struct GenerateDeps<'a> {
    pub subscriptions: &'a dyn SubscriptionRepository,
    pub invoices: &'a dyn InvoiceRepository,
    pub unit: &'a dyn UnitOfWork,
    pub queue: &'a dyn QueuePublisher,
    pub ids: &'a dyn IdGenerator,
    pub charge_queue: &'a str,
}

/// Items for one period of a plan. Usage-priced plans are billed by the usage use case.
pub fn period_items(plan: &Plan, period: &Period) -> DomainResult<Vec<InvoiceItem>> {
    let span = format!("{} – {}", period.start.format("%Y-%m-%d"), period.end.format("%Y-%m-%d"));
    match &plan.kind {
        PlanKind::FixedDebit { amount } | PlanKind::FixedPayout { amount } => {
            Ok(vec![InvoiceItem::new(&format!("{} ({span})", plan.name), 1, *amount)?])
        }
        PlanKind::MeteredDebit { .. } | PlanKind::MeteredPayout { .. } => Err(DomainError::invalid(
            "plan_unsupported",
            "usage-priced plans are billed from usage records, which this deployment does not ingest yet",
            Some("plan"),
        )),
    }
}

/// Creates the period's invoice (exactly once), finalizes it, and asks for the charge.
pub async fn generate_invoice(
    deps: GenerateDeps<'_>,
    msg: &BillPeriod,
    now: DateTime<Utc>,
) -> DomainResult<Option<Invoice>> {
    let scope = &msg.scope;
    // A subscription canceled before this period began gets no invoice for it, even from a message
    // sent earlier.
    let Some(sub) = deps.subscriptions.get(scope, &msg.subscription).await? else { return Ok(None) };
    if sub.cancel_at.is_some_and(|c| msg.period.start >= c) {
        return Ok(None);
    }
    let invoice = match deps.invoices.for_period(scope, &msg.subscription, msg.period.start).await? {
        Some(existing) => existing,
        None => {
            let ctx = system(scope, "generate-invoice");
            let mut inv = Invoice::draft(
                deps.ids.next(IdKind::Invoice),
                msg.customer.clone(),
                Some(msg.subscription.clone()),
                msg.plan.kind.direction(),
                msg.plan.currency,
                Some(msg.period),
                now,
                sub.livemode,
            )
            .with_items(period_items(&msg.plan, &msg.period)?)?;
            inv.test_clock = msg.test_clock.clone();
            let created = InvoiceChange::Created { invoice: Box::new(inv.clone()) };
            let mut events = vec![invoice_event(&ctx, deps.ids, now, &inv, "invoice.created", &created)?];
            let change = journal::transition(&mut inv, InvoiceAction::Finalize, now)?;
            let action = if inv.status == InvoiceStatus::Pending { "invoice.finalized" } else { "invoice.paid" };
            events.push(invoice_event(&ctx, deps.ids, now, &inv, action, &change)?);
            match deps.unit.commit(scope, vec![Write::Invoice { invoice: inv.clone(), expected: None }], events).await {
                Ok(()) => inv,
                // A concurrent or redelivered step made it first: use theirs.
                Err(DomainError::Conflict { .. }) => {
                    deps.invoices.for_period(scope, &msg.subscription, msg.period.start).await?.ok_or_else(|| {
                        DomainError::conflict("transaction_conflict", "invoice creation conflicted; retry")
                    })?
                }
                Err(e) => return Err(e),
            }
        }
    };
    // Asked again on every delivery: charging is idempotent per attempt, and this delivery may be
    // the one after a crash between the commit and the send.
    if invoice.status == InvoiceStatus::Pending {
        request_charge(deps.queue, deps.charge_queue, scope, &invoice).await?;
    }
    Ok(Some(invoice))
}

/// Asks the charge step for the invoice's current attempt.
pub async fn request_charge(
    queue: &dyn QueuePublisher,
    charge_queue: &str,
    scope: &Scope,
    inv: &Invoice,
) -> DomainResult<()> {
    let request = ChargeRequest { scope: scope.clone(), invoice: inv.id.clone(), attempt: inv.attempt_count };
    queue.send(charge_queue, &[message(CHARGE_INVOICE, &request)?]).await
}

// ---------------------------------------------------------------------------------------------
// Charge

#[derive(Debug, Clone, Copy)]
pub struct ChargeDeps<'a> {
    pub invoices: &'a dyn InvoiceRepository,
    pub subscriptions: &'a dyn SubscriptionRepository,
    pub customers: &'a dyn CustomerRepository,
    pub methods: &'a dyn PaymentMethodRepository,
    pub transactions: &'a dyn TransactionRepository,
    pub unit: &'a dyn UnitOfWork,
    pub bus: &'a dyn EventBus,
    pub ids: &'a dyn IdGenerator,
    pub gateways: &'a [&'a dyn PaymentGateway],
    pub dunning: &'a DunningPolicy,
    pub clocks: &'a dyn TestClockRepository,
    pub clock: &'a dyn Clock,
}

/// What a charge step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    /// The gateway accepted it; the outcome comes by webhook.
    Requested { transaction: Id, reference: String },
    /// Nothing to do: a duplicate or stale request.
    Skipped,
    /// Failed before reaching a gateway decision (no payment method, immediate decline).
    Failed { reason: String },
}

async fn payment_method_for(deps: ChargeDeps<'_>, scope: &Scope, inv: &Invoice) -> DomainResult<Option<PaymentMethod>> {
    let sub_method = match &inv.subscription {
        Some(sid) => deps.subscriptions.get(scope, sid).await?.and_then(|s| s.payment_method),
        None => None,
    };
    let default = deps.customers.get(scope, &inv.customer).await?.and_then(|c| c.default_payment_method);
    match method_for_charge(sub_method.as_ref(), default.as_ref()) {
        Ok(id) => deps.methods.get(scope, &id).await,
        Err(_) => Ok(None),
    }
}

/// Makes attempt `req.attempt` to collect an invoice. A retry's transition (charged_with_error →
/// pending) happens here, in the same commit as its transaction, so a retry is never half-made.
pub async fn charge_invoice(deps: ChargeDeps<'_>, req: &ChargeRequest) -> DomainResult<ChargeOutcome> {
    let scope = &req.scope;
    let ctx = system(scope, "charge-invoice");
    let mut inv = deps.invoices.get(scope, &req.invoice).await?.ok_or_else(|| {
        DomainError::conflict("invoice_not_visible", format!("invoice {} is not visible yet; retry", req.invoice))
    })?;
    let now = now_for(deps.clocks, deps.clock, scope, inv.test_clock.as_ref()).await?;
    let expected = inv.version;
    let mut events = Vec::new();
    let retrying = match inv.status {
        InvoiceStatus::Pending if req.attempt == inv.attempt_count => false,
        InvoiceStatus::ChargedWithError | InvoiceStatus::PayoutFailed
            if req.attempt == inv.attempt_count + 1 && inv.next_attempt_at.is_some_and(|t| t <= now) =>
        {
            true
        }
        _ => return Ok(ChargeOutcome::Skipped),
    };
    let kind = match inv.direction {
        crate::plan::Direction::Debit => TransactionType::Charge,
        crate::plan::Direction::Payout => TransactionType::Payout,
    };
    if let Some(existing) = deps.transactions.for_attempt(scope, &inv.id, kind, req.attempt).await? {
        if existing.gateway_reference.is_some() || existing.status != TransactionStatus::Pending {
            return Ok(ChargeOutcome::Skipped);
        }
        // Made but the gateway call did not finish: call again with the same idempotency key.
        let method = payment_method_for(deps, scope, &inv).await?;
        return match method {
            Some(m) => request_money(deps, &ctx, &inv, existing, &m, now).await,
            None => Ok(ChargeOutcome::Skipped),
        };
    }
    if retrying {
        let change = journal::transition(&mut inv, InvoiceAction::Retry, now)?;
        events.push(invoice_event(&ctx, deps.ids, now, &inv, "invoice.retry_started", &change)?);
    }
    let Some(method) = payment_method_for(deps, scope, &inv).await? else {
        let reason = "no_payment_method";
        fail_invoice(deps, &ctx, &mut inv, reason, now, &mut events)?;
        commit_failure(deps, &ctx, inv, expected, Vec::new(), events, now).await?;
        return Ok(ChargeOutcome::Failed { reason: reason.into() });
    };
    let transaction = Transaction {
        id: deps.ids.next(IdKind::Transaction),
        invoice: inv.id.clone(),
        customer: inv.customer.clone(),
        kind,
        status: TransactionStatus::Pending,
        amount: inv.total,
        currency: inv.currency,
        gateway: method.gateway.clone(),
        gateway_reference: None,
        failure_reason: None,
        attempt: req.attempt,
        idempotency_key: Transaction::idempotency_key_for(&inv.id, kind, req.attempt),
        last_event_at: None,
        created: now,
        livemode: inv.livemode,
        version: 1,
    };
    events.push(ctx.snapshot(deps.ids, now, "transaction.created", &transaction));
    let mut writes = vec![Write::Transaction { transaction: transaction.clone(), expected: None }];
    if retrying {
        writes.push(Write::Invoice { invoice: inv.clone(), expected: Some(expected) });
    }
    match deps.unit.commit(scope, writes, events).await {
        Ok(()) => {}
        Err(DomainError::Conflict { .. }) => return Ok(ChargeOutcome::Skipped),
        Err(e) => return Err(e),
    }
    request_money(deps, &ctx, &inv, transaction, &method, now).await
}

/// Calls the gateways in order (the method's own first) until one decides.
async fn request_money(
    deps: ChargeDeps<'_>,
    ctx: &Context,
    inv: &Invoice,
    mut transaction: Transaction,
    method: &PaymentMethod,
    now: DateTime<Utc>,
) -> DomainResult<ChargeOutcome> {
    let movement = MoneyMovement {
        idempotency_key: transaction.idempotency_key.clone(),
        amount: Money::new(transaction.amount, transaction.currency),
        instrument: method.instrument.clone(),
        transaction: transaction.id.to_string(),
        scope: ctx.scope.key(),
        description: format!("Invoice {}", inv.id),
    };
    let mut ordered: Vec<&dyn PaymentGateway> =
        deps.gateways.iter().copied().filter(|g| g.name() == method.gateway).collect();
    ordered.extend(
        deps.gateways
            .iter()
            .copied()
            .filter(|g| g.name() != method.gateway && g.supports(method.instrument.method_type())),
    );
    let mut last_error = String::from("no gateway serves this payment method");
    for gateway in ordered {
        let answer = match transaction.kind {
            TransactionType::Payout => gateway.payout(&movement).await,
            _ => gateway.charge(&movement).await,
        };
        match answer {
            Ok(GatewayResponse::Accepted { reference }) => {
                // The reference is recorded without a new version, so it never races the webhook
                // that may already be settling this transaction (which records it too).
                transaction.gateway = gateway.name().to_owned();
                transaction.gateway_reference = Some(reference.clone());
                let note = ctx.snapshot(deps.ids, now, "transaction.requested", &transaction).as_note();
                let (gateway, id) = (gateway.name().to_owned(), transaction.id.clone());
                let writes = vec![
                    Write::GatewayReference {
                        gateway: gateway.clone(),
                        reference: reference.clone(),
                        transaction: id.clone(),
                    },
                    Write::TransactionReference { transaction: id, gateway, reference: reference.clone() },
                ];
                match deps.unit.commit(&ctx.scope, writes, vec![note]).await {
                    // A conflict means the outcome already arrived and recorded the reference.
                    Ok(()) | Err(DomainError::Conflict { .. }) => {}
                    Err(e) => return Err(e),
                }
                return Ok(ChargeOutcome::Requested { transaction: transaction.id, reference });
            }
            Ok(GatewayResponse::Declined { code, .. }) => {
                let scope = ctx.scope.clone();
                let mut inv = deps
                    .invoices
                    .get(&scope, &inv.id)
                    .await?
                    .ok_or_else(|| DomainError::unexpected("invoice vanished"))?;
                let expected_inv = inv.version;
                let expected_txn = transaction.version;
                transaction.settle(TransactionStatus::Failed, now, Some(&code))?;
                let mut events =
                    vec![ctx.snapshot(deps.ids, now, "transaction.failed", &transaction).because(Some(&code))];
                fail_invoice(deps, ctx, &mut inv, &code, now, &mut events)?;
                let writes = vec![Write::Transaction { transaction, expected: Some(expected_txn) }];
                commit_failure(deps, ctx, inv, expected_inv, writes, events, now).await?;
                return Ok(ChargeOutcome::Failed { reason: code });
            }
            Err(unavailable) => last_error = unavailable.to_string(),
        }
    }
    // Every gateway was unavailable: fail the step so the queue retries it later.
    Err(DomainError::unexpected(last_error))
}

/// Records a failed attempt: retried later per the dunning policy, or given up.
fn fail_invoice(
    deps: ChargeDeps<'_>,
    ctx: &Context,
    inv: &mut Invoice,
    reason: &str,
    now: DateTime<Utc>,
    events: &mut Vec<crate::audit::AuditEvent>,
) -> DomainResult<()> {
    let next = deps.dunning.next_attempt_at(inv.attempt_count, now);
    let change = journal::fail(inv, reason, next, now)?;
    events.push(invoice_event(ctx, deps.ids, now, inv, "invoice.payment_failed", &change)?);
    if next.is_none() {
        let change = journal::transition(inv, InvoiceAction::GiveUp, now)?;
        events.push(invoice_event(ctx, deps.ids, now, inv, "invoice.uncollectible", &change)?);
    }
    Ok(())
}

/// Commits a failed invoice (with `writes` made alongside) and, when it was given up, the
/// subscription's consequence.
async fn commit_failure(
    deps: ChargeDeps<'_>,
    ctx: &Context,
    inv: Invoice,
    expected: u64,
    mut writes: Vec<Write>,
    mut events: Vec<crate::audit::AuditEvent>,
    now: DateTime<Utc>,
) -> DomainResult<()> {
    let scope = &ctx.scope;
    if inv.status == InvoiceStatus::Failed
        && let Some(sid) = &inv.subscription
        && let Some(mut sub) = deps.subscriptions.get(scope, sid).await?
    {
        let sub_expected = sub.version;
        if final_consequence(deps.dunning, &mut sub, now)? {
            let action = if sub.status == SubscriptionStatus::Canceled {
                "subscription.canceled"
            } else {
                "subscription.past_due"
            };
            events.push(subscription_event(ctx, deps.ids, now, &sub, action, Some("an invoice is uncollectible")));
            writes.push(Write::Subscription { subscription: sub, expected: Some(sub_expected) });
        }
    }
    writes.push(Write::Invoice { invoice: inv, expected: Some(expected) });
    deps.unit.commit(scope, writes, events).await
}

/// The subscription's status after one of its invoices became uncollectible.
fn final_consequence(policy: &DunningPolicy, sub: &mut Subscription, now: DateTime<Utc>) -> DomainResult<bool> {
    if !sub.status.is_live() {
        return Ok(false);
    }
    match policy.final_action {
        FinalAction::PastDue if sub.status == SubscriptionStatus::PastDue => Ok(false),
        FinalAction::PastDue => sub.apply(SubscriptionAction::PaymentFailed).map(|_| true),
        FinalAction::Cancel => sub.cancel(false, now).map(|()| true),
    }
}

// ---------------------------------------------------------------------------------------------
// Gateway events

#[derive(Debug, Clone, Copy)]
pub struct EventDeps<'a> {
    pub invoices: &'a dyn InvoiceRepository,
    pub subscriptions: &'a dyn SubscriptionRepository,
    pub transactions: &'a dyn TransactionRepository,
    pub clocks: &'a dyn TestClockRepository,
    pub unit: &'a dyn UnitOfWork,
    pub bus: &'a dyn EventBus,
    pub ids: &'a dyn IdGenerator,
    pub clock: &'a dyn Clock,
    pub dunning: &'a DunningPolicy,
}

/// What applying a gateway event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventOutcome {
    Applied {
        invoice: Id,
        status: InvoiceStatus,
    },
    /// Older than what was already applied: journaled, status unchanged.
    Stale,
    /// Seen before: nothing to do.
    Duplicate,
}

/// Applies a verified gateway event: settles the transaction in event-time order, moves the
/// invoice (paid, or failed with dunning), and the subscription when it recovers or is given up.
pub async fn apply_gateway_event(deps: EventDeps<'_>, event: &GatewayEvent) -> DomainResult<EventOutcome> {
    let (scope, txn_id) = match deps.transactions.by_reference(&event.gateway, &event.reference).await? {
        Some(found) => found,
        // The outcome overtook the recording of the reference: use the metadata the gateway echoed.
        None => match (event.scope.as_deref().and_then(Scope::parse_key), &event.transaction) {
            (Some(scope), Some(txn)) => (scope, Id::parse(IdKind::Transaction, txn, "transaction")?),
            _ => {
                return Err(DomainError::conflict(
                    "reference_unknown",
                    format!("no transaction for {} {} yet; retry", event.gateway, event.reference),
                ));
            }
        },
    };
    let mut txn =
        deps.transactions.get(&scope, &txn_id).await?.ok_or_else(|| DomainError::unexpected("transaction vanished"))?;
    let mut inv =
        deps.invoices.get(&scope, &txn.invoice).await?.ok_or_else(|| DomainError::unexpected("invoice vanished"))?;
    let now = now_for(deps.clocks, deps.clock, &scope, inv.test_clock.as_ref()).await?;
    let ctx = Context {
        scope: scope.clone(),
        actor: Actor::Gateway { gateway: event.gateway.clone(), event_id: event.id.clone() },
        request_id: None,
    };
    let (txn_expected, inv_expected) = (txn.version, inv.version);
    let target = match event.kind {
        GatewayEventKind::ChargeSucceeded | GatewayEventKind::PayoutPaid => TransactionStatus::Succeeded,
        GatewayEventKind::ChargeFailed | GatewayEventKind::PayoutFailed => TransactionStatus::Failed,
        _ => return apply_dispute(deps, &ctx, event, inv, now).await,
    };
    if txn.status == target && txn.last_event_at.is_some_and(|t| t >= event.occurred_at) {
        return Ok(EventOutcome::Duplicate);
    }
    if txn.gateway_reference.is_none() {
        txn.gateway = event.gateway.clone();
        txn.gateway_reference = Some(event.reference.clone());
    }
    let applied = match txn.settle(target, event.occurred_at, event.failure_code.as_deref()) {
        Ok(applied) => applied,
        // A final outcome followed by a contradicting newer event: journal it, change nothing.
        Err(DomainError::IllegalTransition { .. }) => false,
        Err(e) => return Err(e),
    };
    if !applied {
        let note = ctx.record(
            deps.ids,
            now,
            Change {
                entity: &txn.id,
                entity_type: "transaction",
                account: Some(&txn.customer),
                action: "transaction.event_ignored",
                version: 0,
                reason: Some("older than the last applied event, or contradicts a final outcome"),
                before: None,
                after: Some(event),
                change: None,
            },
        );
        let marker = Write::GatewayEventApplied { gateway: event.gateway.clone(), event_id: event.id.clone() };
        return match deps.unit.commit(&scope, vec![marker], vec![note]).await {
            Ok(()) => Ok(EventOutcome::Stale),
            Err(DomainError::Conflict { .. }) => Ok(EventOutcome::Duplicate),
            Err(e) => Err(e),
        };
    }
    let action = if target == TransactionStatus::Succeeded { "transaction.succeeded" } else { "transaction.failed" };
    let mut events = vec![ctx.snapshot(deps.ids, now, action, &txn).because(event.failure_code.as_deref())];
    let mut writes = Vec::new();
    let mut domain_events = Vec::new();
    // Only the invoice's current attempt moves it; an old attempt's late news is journaled above.
    let current = txn.attempt == inv.attempt_count && matches!(inv.status, InvoiceStatus::Pending);
    if current {
        let sub = match &inv.subscription {
            Some(sid) => deps.subscriptions.get(&scope, sid).await?,
            None => None,
        };
        if target == TransactionStatus::Succeeded {
            let change = journal::transition(&mut inv, InvoiceAction::Succeed, now)?;
            let paid = if inv.direction == crate::plan::Direction::Payout { "payout.paid" } else { "invoice.paid" };
            events.push(invoice_event(&ctx, deps.ids, now, &inv, paid, &change)?);
            domain_events.push(paid);
            if let Some(mut sub) = sub.filter(|s| s.status == SubscriptionStatus::PastDue) {
                let expected = sub.version;
                sub.apply(SubscriptionAction::PaymentRecovered)?;
                events.push(subscription_event(&ctx, deps.ids, now, &sub, "subscription.recovered", None));
                writes.push(Write::Subscription { subscription: sub, expected: Some(expected) });
            }
        } else {
            let reason = event.failure_code.clone().unwrap_or_else(|| "failed".into());
            let next = deps.dunning.next_attempt_at(inv.attempt_count, now);
            let change = journal::fail(&mut inv, &reason, next, now)?;
            events.push(invoice_event(&ctx, deps.ids, now, &inv, "invoice.payment_failed", &change)?);
            domain_events.push("invoice.payment_failed");
            if next.is_none() {
                let change = journal::transition(&mut inv, InvoiceAction::GiveUp, now)?;
                events.push(invoice_event(&ctx, deps.ids, now, &inv, "invoice.uncollectible", &change)?);
                if let Some(mut sub) = sub {
                    let expected = sub.version;
                    if final_consequence(deps.dunning, &mut sub, now)? {
                        let action = if sub.status == SubscriptionStatus::Canceled {
                            "subscription.canceled"
                        } else {
                            "subscription.past_due"
                        };
                        events.push(subscription_event(
                            &ctx,
                            deps.ids,
                            now,
                            &sub,
                            action,
                            Some("an invoice is uncollectible"),
                        ));
                        domain_events.push(action);
                        writes.push(Write::Subscription { subscription: sub, expected: Some(expected) });
                    }
                }
            }
        }
        writes.push(Write::Invoice { invoice: inv.clone(), expected: Some(inv_expected) });
    }
    writes.push(Write::Transaction { transaction: txn, expected: Some(txn_expected) });
    writes.push(Write::GatewayEventApplied { gateway: event.gateway.clone(), event_id: event.id.clone() });
    deps.unit.commit(&scope, writes, events).await?;
    publish(deps.bus, deps.ids, &scope, &inv, &domain_events, now).await;
    Ok(EventOutcome::Applied { invoice: inv.id, status: inv.status })
}

/// Disputes move a paid invoice to protest, then to chargeback or back to paid.
async fn apply_dispute(
    deps: EventDeps<'_>,
    ctx: &Context,
    event: &GatewayEvent,
    mut inv: Invoice,
    now: DateTime<Utc>,
) -> DomainResult<EventOutcome> {
    let action = match event.kind {
        GatewayEventKind::DisputeOpened => InvoiceAction::Contest,
        GatewayEventKind::DisputeWon => InvoiceAction::DisputeWon,
        GatewayEventKind::DisputeLost => InvoiceAction::DisputeLost,
        // Refund outcomes are applied by the refund use case, which is not part of this pipeline.
        _ => return Ok(EventOutcome::Stale),
    };
    let expected = inv.version;
    let change = match journal::transition(&mut inv, action, now) {
        Ok(change) => change,
        Err(DomainError::IllegalTransition { .. }) => return Ok(EventOutcome::Stale),
        Err(e) => return Err(e),
    };
    let name = match action {
        InvoiceAction::Contest => "invoice.disputed",
        InvoiceAction::DisputeWon => "invoice.dispute_won",
        _ => "invoice.charged_back",
    };
    let events = vec![invoice_event(ctx, deps.ids, now, &inv, name, &change)?];
    let writes = vec![
        Write::Invoice { invoice: inv.clone(), expected: Some(expected) },
        Write::GatewayEventApplied { gateway: event.gateway.clone(), event_id: event.id.clone() },
    ];
    match deps.unit.commit(&ctx.scope, writes, events).await {
        Ok(()) => {}
        Err(DomainError::Conflict { .. }) => return Ok(EventOutcome::Duplicate),
        Err(e) => return Err(e),
    }
    publish(deps.bus, deps.ids, &ctx.scope, &inv, &[name], now).await;
    Ok(EventOutcome::Applied { invoice: inv.id, status: inv.status })
}

/// Domain events go out after the commit; a failure to publish is logged by the caller's tracing,
/// not undone (the audit trail is the record of truth).
async fn publish(
    bus: &dyn EventBus,
    ids: &dyn IdGenerator,
    scope: &Scope,
    inv: &Invoice,
    kinds: &[&str],
    now: DateTime<Utc>,
) {
    if kinds.is_empty() {
        return;
    }
    let events: Vec<DomainEvent> = kinds
        .iter()
        .map(|k| DomainEvent {
            id: ids.next(IdKind::Event),
            kind: (*k).to_owned(),
            scope: scope.clone(),
            occurred_at: now,
            data: serde_json::json!({"invoice": inv.id, "customer": inv.customer, "subscription": inv.subscription, "status": inv.status, "total": inv.total, "currency": inv.currency}),
        })
        .collect();
    let _ = bus.publish(&events).await;
}

// ---------------------------------------------------------------------------------------------
// Webhook reception

/// Why a webhook was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reception {
    Queued,
    /// Already applied: acknowledged without queueing it again.
    AlreadyApplied,
}

/// Verifies a gateway's webhook and hands it to the processing queue. Nothing is stored for a
/// webhook that fails verification.
pub async fn receive_webhook(
    gateway: &dyn PaymentGateway,
    transactions: &dyn TransactionRepository,
    queue: &dyn QueuePublisher,
    webhook_queue: &str,
    headers: &[(String, String)],
    body: &[u8],
    now: DateTime<Utc>,
) -> DomainResult<Reception> {
    let event = gateway.verify_webhook(headers, body, now).map_err(|rejection| {
        let code = match rejection {
            crate::gateway::WebhookRejection::MissingSignature => "signature_missing",
            crate::gateway::WebhookRejection::BadSignature => "signature_invalid",
            crate::gateway::WebhookRejection::Stale => "signature_stale",
            crate::gateway::WebhookRejection::Payload(_) => "payload_invalid",
        };
        DomainError::invalid(code, rejection.to_string(), None)
    })?;
    if transactions.event_applied(&event.gateway, &event.id).await? {
        return Ok(Reception::AlreadyApplied);
    }
    queue.send(webhook_queue, &[message(GATEWAY_EVENT, &event)?]).await?;
    Ok(Reception::Queued)
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
/// is due.
pub async fn clock_status(
    subscriptions: &dyn SubscriptionRepository,
    invoices: &dyn InvoiceRepository,
    scope: &Scope,
    clock: &crate::test_clock::TestClock,
) -> DomainResult<ClockStatus> {
    let frozen = clock.frozen_time;
    for customer in &clock.customers {
        for sub in subscriptions.for_customer(scope, customer).await? {
            if !sub.due_periods(frozen)?.is_empty() || invoices.periods_billed(scope, &sub.id).await? < sub.next_period
            {
                return Ok(ClockStatus::Advancing);
            }
            if sub.next_due_at()?.is_some_and(|t| t <= frozen) {
                return Ok(ClockStatus::Advancing);
            }
        }
        for inv in invoices.for_customer(scope, customer).await? {
            let waiting = inv.status == InvoiceStatus::Pending;
            let retry_due = matches!(inv.status, InvoiceStatus::ChargedWithError | InvoiceStatus::PayoutFailed)
                && inv.next_attempt_at.is_some_and(|t| t <= frozen);
            if waiting || retry_due {
                return Ok(ClockStatus::Advancing);
            }
        }
    }
    Ok(ClockStatus::Ready)
}
