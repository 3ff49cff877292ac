//! Charging: one attempt to collect an invoice through the gateways. A batch of requests is read
//! together, its transactions created in as few store requests as possible, the gateways called
//! concurrently, and their references recorded together. Anything unusual (a redelivered attempt,
//! no payment method, a decline) takes the one-by-one path, which re-reads what it needs.

use super::{BatchTime, ChargeRequest, invoice_event, now_for, per_item, system, uncollectible_consequence};
use crate::audit::Context;
use crate::dunning::DunningPolicy;
use crate::error::{DomainError, DomainResult};
use crate::gateway::{GatewayResponse, MoneyMovement, PaymentGateway};
use crate::ids::{Id, IdGenerator, IdKind};
use crate::invoice::{Invoice, InvoiceAction, InvoiceStatus};
use crate::journal;
use crate::money::Money;
use crate::payment_method::{PaymentMethod, method_for_charge};
use crate::ports::{
    Changeset, Clock, CustomerRepository, EventBus, InvoiceRepository, PaymentMethodRepository, SubscriptionRepository,
    TestClockRepository, TransactionRepository, UnitOfWork, Write,
};
use crate::tenant::Scope;
use crate::transaction::{Transaction, TransactionStatus, TransactionType};
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use std::collections::HashMap;

/// How many gateway calls of one batch are in flight at once.
const GATEWAY_CONCURRENCY: usize = 10;

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

/// Whether a request makes a new attempt, and whether that attempt is a retry.
enum Attempt {
    New { retrying: bool },
    Stale,
}

fn attempt_of(inv: &Invoice, req: &ChargeRequest, now: DateTime<Utc>) -> Attempt {
    match inv.status {
        InvoiceStatus::Pending if req.attempt == inv.attempt_count => Attempt::New { retrying: false },
        InvoiceStatus::ChargedWithError | InvoiceStatus::PayoutFailed
            if req.attempt == inv.attempt_count + 1 && inv.next_attempt_at.is_some_and(|t| t <= now) =>
        {
            Attempt::New { retrying: true }
        }
        _ => Attempt::Stale,
    }
}

fn kind_of(inv: &Invoice) -> TransactionType {
    match inv.direction {
        crate::plan::Direction::Debit => TransactionType::Charge,
        crate::plan::Direction::Payout => TransactionType::Payout,
    }
}

/// The payment method each invoice is charged with (the subscription's, else the customer's
/// default), read for the whole batch in three requests. Invoices without one are absent.
async fn methods_for(
    deps: ChargeDeps<'_>,
    invoices: &[(&Scope, &Invoice)],
) -> DomainResult<HashMap<Id, PaymentMethod>> {
    let sub_keys: Vec<(Scope, Id)> =
        invoices.iter().filter_map(|(s, i)| Some(((*s).clone(), i.subscription.clone()?))).collect();
    let customer_keys: Vec<(Scope, Id)> = invoices.iter().map(|(s, i)| ((*s).clone(), i.customer.clone())).collect();
    let sub_methods: HashMap<Id, Id> = deps
        .subscriptions
        .get_many(&sub_keys)
        .await?
        .into_iter()
        .filter_map(|s| Some((s.id, s.payment_method?)))
        .collect();
    let defaults: HashMap<Id, Id> = deps
        .customers
        .get_many(&customer_keys)
        .await?
        .into_iter()
        .filter_map(|c| Some((c.id, c.default_payment_method?)))
        .collect();
    let chosen: Vec<(Id, Scope, Id)> = invoices
        .iter()
        .filter_map(|(scope, inv)| {
            let sub = inv.subscription.as_ref().and_then(|s| sub_methods.get(s));
            let method = method_for_charge(sub, defaults.get(&inv.customer)).ok()?;
            Some((inv.id.clone(), (*scope).clone(), method))
        })
        .collect();
    let method_keys: Vec<(Scope, Id)> = chosen.iter().map(|(_, s, m)| (s.clone(), m.clone())).collect();
    let methods: HashMap<Id, PaymentMethod> =
        deps.methods.get_many(&method_keys).await?.into_iter().map(|m| (m.id.clone(), m)).collect();
    Ok(chosen.into_iter().filter_map(|(inv, _, m)| Some((inv, methods.get(&m)?.clone()))).collect())
}

async fn payment_method_for(deps: ChargeDeps<'_>, scope: &Scope, inv: &Invoice) -> DomainResult<Option<PaymentMethod>> {
    Ok(methods_for(deps, &[(scope, inv)]).await?.remove(&inv.id))
}

fn new_transaction(
    deps: ChargeDeps<'_>,
    inv: &Invoice,
    method: &PaymentMethod,
    attempt: u32,
    now: DateTime<Utc>,
) -> Transaction {
    let kind = kind_of(inv);
    Transaction {
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
        attempt,
        idempotency_key: Transaction::idempotency_key_for(&inv.id, kind, attempt),
        last_event_at: None,
        created: now,
        livemode: inv.livemode,
        version: 1,
    }
}

/// A new attempt, ready to commit: the transaction (and a retry's invoice transition).
struct NewAttempt {
    index: usize,
    ctx: Context,
    inv: Invoice,
    transaction: Transaction,
    method: PaymentMethod,
    now: DateTime<Utc>,
}

fn plan_attempt(
    deps: ChargeDeps<'_>,
    index: usize,
    req: &ChargeRequest,
    mut inv: Invoice,
    method: PaymentMethod,
    retrying: bool,
    now: DateTime<Utc>,
) -> DomainResult<(NewAttempt, Changeset)> {
    let ctx = system(&req.scope, "charge-invoice");
    let expected = inv.version;
    let mut events = Vec::new();
    if retrying {
        let change = journal::transition(&mut inv, InvoiceAction::Retry, now)?;
        events.push(invoice_event(&ctx, deps.ids, now, &inv, "invoice.retry_started", &change)?);
    }
    let transaction = new_transaction(deps, &inv, &method, req.attempt, now);
    events.push(ctx.snapshot(deps.ids, now, "transaction.created", &transaction));
    let mut writes = vec![Write::Transaction { transaction: transaction.clone(), expected: None }];
    if retrying {
        writes.push(Write::Invoice { invoice: inv.clone(), expected: Some(expected) });
    }
    let change = Changeset { scope: req.scope.clone(), writes, events };
    Ok((NewAttempt { index, ctx, inv, transaction, method, now }, change))
}

/// Makes attempt `req.attempt` of each request. A retry's transition (charged_with_error →
/// pending) is committed with its transaction, so a retry is never half-made. Results come back
/// in the order of `reqs`.
pub async fn charge_invoices(deps: ChargeDeps<'_>, reqs: &[ChargeRequest]) -> Vec<DomainResult<ChargeOutcome>> {
    per_item(reqs.len(), charge_batch(deps, reqs).await)
}

async fn charge_batch(deps: ChargeDeps<'_>, reqs: &[ChargeRequest]) -> DomainResult<Vec<DomainResult<ChargeOutcome>>> {
    let keys: Vec<(Scope, Id)> = reqs.iter().map(|r| (r.scope.clone(), r.invoice.clone())).collect();
    let invoices: HashMap<Id, Invoice> =
        deps.invoices.get_many(&keys).await?.into_iter().map(|i| (i.id.clone(), i)).collect();
    let found: Vec<(&Scope, &Invoice)> =
        reqs.iter().filter_map(|r| Some((&r.scope, invoices.get(&r.invoice)?))).collect();
    let time = BatchTime::read(deps.clocks, deps.clock, found.iter().map(|(s, i)| (*s, i.test_clock.as_ref()))).await?;
    let methods = methods_for(deps, &found).await?;
    let mut results: Vec<Option<DomainResult<ChargeOutcome>>> = reqs.iter().map(|_| None).collect();
    let mut one_by_one = Vec::new();
    let (mut attempts, mut changes) = (Vec::new(), Vec::new());
    for (i, req) in reqs.iter().enumerate() {
        // (`get`, not `remove`: a request delivered twice in one batch is decided like any other
        // duplicate, by its attempt's claim.)
        let Some(inv) = invoices.get(&req.invoice).cloned() else {
            results[i] = Some(Err(DomainError::conflict(
                "invoice_not_visible",
                format!("invoice {} is not visible yet; retry", req.invoice),
            )));
            continue;
        };
        let now = match time.now(inv.test_clock.as_ref()) {
            Ok(now) => now,
            Err(e) => {
                results[i] = Some(Err(e));
                continue;
            }
        };
        match (attempt_of(&inv, req, now), methods.get(&inv.id).cloned()) {
            (Attempt::Stale, _) => results[i] = Some(Ok(ChargeOutcome::Skipped)),
            (Attempt::New { retrying }, Some(method)) => match plan_attempt(deps, i, req, inv, method, retrying, now) {
                Ok((attempt, change)) => {
                    attempts.push(attempt);
                    changes.push(change);
                }
                Err(e) => results[i] = Some(Err(e)),
            },
            // No payment method: recorded as a failed attempt, one by one.
            (Attempt::New { .. }, None) => one_by_one.push(i),
        }
    }
    let mut made = Vec::new();
    for (attempt, committed) in attempts.into_iter().zip(deps.unit.commit_each(changes).await) {
        match committed {
            Ok(()) => made.push(attempt),
            // The attempt exists already (a redelivery) or the invoice moved: decided one by one.
            Err(DomainError::Conflict { .. }) => one_by_one.push(attempt.index),
            Err(e) => results[attempt.index] = Some(Err(e)),
        }
    }
    let answers: Vec<(NewAttempt, DomainResult<Answer>)> = stream::iter(made)
        .map(|a| async move {
            let answer = ask_gateways(deps, &a.ctx, &a.inv, &a.transaction, &a.method).await;
            (a, answer)
        })
        .buffer_unordered(GATEWAY_CONCURRENCY)
        .collect()
        .await;
    let (mut accepted, mut references) = (Vec::new(), Vec::new());
    for (a, answer) in answers {
        match answer {
            Ok(Answer::Accepted { gateway, reference }) => {
                references.push(reference_change(deps, &a.ctx, a.transaction.clone(), &gateway, &reference, a.now));
                accepted.push((a.index, a.transaction.id, reference));
            }
            Ok(Answer::Declined { code }) => {
                results[a.index] = Some(record_decline(deps, &a.ctx, &a.inv.id, a.transaction, &code, a.now).await);
            }
            // Every gateway unavailable: the queue retries, and the retry finds this attempt.
            Err(e) => results[a.index] = Some(Err(e)),
        }
    }
    for ((index, transaction, reference), committed) in
        accepted.into_iter().zip(deps.unit.commit_each(references).await)
    {
        results[index] = Some(match committed {
            // A conflict means the outcome already arrived and recorded the reference.
            Ok(()) | Err(DomainError::Conflict { .. }) => Ok(ChargeOutcome::Requested { transaction, reference }),
            Err(e) => Err(e),
        });
    }
    for i in one_by_one {
        results[i] = Some(charge_one(deps, &reqs[i]).await);
    }
    Ok(results.into_iter().map(|r| r.unwrap_or(Ok(ChargeOutcome::Skipped))).collect())
}

/// One request, reading everything afresh: the path for redeliveries, missing methods and races.
async fn charge_one(deps: ChargeDeps<'_>, req: &ChargeRequest) -> DomainResult<ChargeOutcome> {
    let scope = &req.scope;
    let ctx = system(scope, "charge-invoice");
    let mut inv = deps.invoices.get(scope, &req.invoice).await?.ok_or_else(|| {
        DomainError::conflict("invoice_not_visible", format!("invoice {} is not visible yet; retry", req.invoice))
    })?;
    let now = now_for(deps.clocks, deps.clock, scope, inv.test_clock.as_ref()).await?;
    let Attempt::New { retrying } = attempt_of(&inv, req, now) else { return Ok(ChargeOutcome::Skipped) };
    if let Some(existing) = deps.transactions.for_attempt(scope, &inv.id, kind_of(&inv), req.attempt).await? {
        if existing.gateway_reference.is_some() || existing.status != TransactionStatus::Pending {
            return Ok(ChargeOutcome::Skipped);
        }
        // Made but the gateway call did not finish: call again with the same idempotency key.
        return match payment_method_for(deps, scope, &inv).await? {
            Some(m) => request_money(deps, &ctx, &inv, existing, &m, now).await,
            None => Ok(ChargeOutcome::Skipped),
        };
    }
    let Some(method) = payment_method_for(deps, scope, &inv).await? else {
        let reason = "no_payment_method";
        let expected = inv.version;
        let mut events = Vec::new();
        if retrying {
            let change = journal::transition(&mut inv, InvoiceAction::Retry, now)?;
            events.push(invoice_event(&ctx, deps.ids, now, &inv, "invoice.retry_started", &change)?);
        }
        fail_invoice(deps, &ctx, &mut inv, reason, now, &mut events)?;
        commit_failure(deps, &ctx, inv, expected, Vec::new(), events, now).await?;
        return Ok(ChargeOutcome::Failed { reason: reason.into() });
    };
    let (attempt, change) = plan_attempt(deps, 0, req, inv, method, retrying, now)?;
    match deps.unit.commit(scope, change.writes, change.events).await {
        Ok(()) => {}
        Err(DomainError::Conflict { .. }) => return Ok(ChargeOutcome::Skipped),
        Err(e) => return Err(e),
    }
    request_money(deps, &ctx, &attempt.inv, attempt.transaction, &attempt.method, now).await
}

/// What the gateways said to one attempt.
enum Answer {
    Accepted { gateway: String, reference: String },
    Declined { code: String },
}

/// Calls the gateways in order (the method's own first) until one decides.
async fn ask_gateways(
    deps: ChargeDeps<'_>,
    ctx: &Context,
    inv: &Invoice,
    transaction: &Transaction,
    method: &PaymentMethod,
) -> DomainResult<Answer> {
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
                return Ok(Answer::Accepted { gateway: gateway.name().to_owned(), reference });
            }
            Ok(GatewayResponse::Declined { code, .. }) => return Ok(Answer::Declined { code }),
            Err(unavailable) => last_error = unavailable.to_string(),
        }
    }
    // Every gateway was unavailable: fail the step so the queue retries it later.
    Err(DomainError::unexpected(last_error))
}

/// Records an accepted attempt's gateway reference, without a new version, so it never races the
/// webhook that may already be settling the transaction (which records it too).
fn reference_change(
    deps: ChargeDeps<'_>,
    ctx: &Context,
    mut transaction: Transaction,
    gateway: &str,
    reference: &str,
    now: DateTime<Utc>,
) -> Changeset {
    transaction.gateway = gateway.to_owned();
    transaction.gateway_reference = Some(reference.to_owned());
    let note = ctx.snapshot(deps.ids, now, "transaction.requested", &transaction).as_note();
    let writes = vec![
        Write::GatewayReference {
            gateway: gateway.to_owned(),
            reference: reference.to_owned(),
            transaction: transaction.id.clone(),
        },
        Write::TransactionReference {
            transaction: transaction.id,
            gateway: gateway.to_owned(),
            reference: reference.to_owned(),
        },
    ];
    Changeset { scope: ctx.scope.clone(), writes, events: vec![note] }
}

/// Asks the gateways and records what they said, for one attempt.
async fn request_money(
    deps: ChargeDeps<'_>,
    ctx: &Context,
    inv: &Invoice,
    transaction: Transaction,
    method: &PaymentMethod,
    now: DateTime<Utc>,
) -> DomainResult<ChargeOutcome> {
    match ask_gateways(deps, ctx, inv, &transaction, method).await? {
        Answer::Accepted { gateway, reference } => {
            let id = transaction.id.clone();
            let change = reference_change(deps, ctx, transaction, &gateway, &reference, now);
            match deps.unit.commit(&ctx.scope, change.writes, change.events).await {
                Ok(()) | Err(DomainError::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
            Ok(ChargeOutcome::Requested { transaction: id, reference })
        }
        Answer::Declined { code } => record_decline(deps, ctx, &inv.id, transaction, &code, now).await,
    }
}

/// A gateway's immediate decline: the transaction fails and the invoice follows dunning.
async fn record_decline(
    deps: ChargeDeps<'_>,
    ctx: &Context,
    invoice: &Id,
    mut transaction: Transaction,
    code: &str,
    now: DateTime<Utc>,
) -> DomainResult<ChargeOutcome> {
    let mut inv =
        deps.invoices.get(&ctx.scope, invoice).await?.ok_or_else(|| DomainError::unexpected("invoice vanished"))?;
    let expected_inv = inv.version;
    let expected_txn = transaction.version;
    transaction.settle(TransactionStatus::Failed, now, Some(code))?;
    let mut events = vec![ctx.snapshot(deps.ids, now, "transaction.failed", &transaction).because(Some(code))];
    fail_invoice(deps, ctx, &mut inv, code, now, &mut events)?;
    let writes = vec![Write::Transaction { transaction, expected: Some(expected_txn) }];
    commit_failure(deps, ctx, inv, expected_inv, writes, events, now).await?;
    Ok(ChargeOutcome::Failed { reason: code.to_owned() })
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
        && let Some(sub) = deps.subscriptions.get(scope, sid).await?
        && let Some((write, event, _)) = uncollectible_consequence(deps.dunning, ctx, deps.ids, sub, now)?
    {
        events.push(event);
        writes.push(write);
    }
    writes.push(Write::Invoice { invoice: inv, expected: Some(expected) });
    deps.unit.commit(scope, writes, events).await
}
