//! Charging: one attempt to collect an invoice (or pay one out) through the gateways. A batch of
//! requests is read together, its transactions created in as few store requests as possible, the
//! gateways called concurrently, and their references recorded together. Anything unusual (a
//! redelivered attempt, no payment method, a decline, a lost answer) takes the one-by-one path,
//! which re-reads what it needs.
//!
//! Which gateways may be called is decided by the tenant's routing rules, among the gateways that
//! hold a token for the method. Only a call that was **not sent** moves on to the next one; a call
//! whose outcome is **unknown** leaves the transaction `unknown`, to be settled by the gateway's
//! webhook or a look-up, and nothing is sent anywhere again. A redelivered attempt that finds its
//! transaction pending without a gateway answer cannot tell whether its first run reached the
//! gateway, so it is treated the same way: Billy's guard against a double charge does not rely on
//! the gateway honouring idempotency keys.

use super::{
    BatchTime, ChargeRequest, attempt_made, attempt_transaction, create_attempt, invoice_event, per_item, settings_for,
    system, uncollectible_consequence,
};
use crate::audit::Context;
use crate::error::{DomainError, DomainResult};
use crate::gateway::{GatewayError, GatewayResponse, MoneyMovement};
use crate::ids::Id;
use crate::invoice::{Invoice, InvoiceAction, InvoiceStatus};
use crate::journal;
use crate::money::Money;
use crate::payment_method::{PaymentMethod, destination_for_payout, method_for_charge};
use crate::plan::Direction;
use crate::ports::{Changeset, Ports, Write};
use crate::settings::TenantSettings;
use crate::tenant::Scope;
use crate::transaction::{Transaction, TransactionStatus, TransactionType};
use chrono::{DateTime, Utc};
use futures::stream::{self, StreamExt};
use std::collections::HashMap;

/// How many gateway calls of one batch are in flight at once.
const GATEWAY_CONCURRENCY: usize = 10;

/// What a charge step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    /// The gateway accepted it; the outcome comes by webhook.
    Requested { transaction: Id, reference: String },
    /// The gateway's answer was lost: the transaction is `unknown` until its webhook or a look-up.
    Unknown { transaction: Id },
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

/// `now` is the scope's time (a test clock's frozen time): a retry is made only once it is due.
fn attempt_of(inv: &Invoice, req: &ChargeRequest, now: DateTime<Utc>) -> Attempt {
    match inv.status {
        InvoiceStatus::Pending if req.attempt == inv.attempt_count => Attempt::New { retrying: false },
        InvoiceStatus::ChargedWithError | InvoiceStatus::PayoutFailed
            if req.attempt == inv.attempt_count + 1 && inv.retry_due(now) =>
        {
            Attempt::New { retrying: true }
        }
        _ => Attempt::Stale,
    }
}

/// The instrument each invoice uses: a debit's payment method (the subscription's, else the
/// customer's default), a payout's destination (the customer's default payout destination), read
/// for the whole batch in a few requests. Invoices without one are absent.
async fn methods_for(p: &Ports<'_>, invoices: &[(&Scope, &Invoice)]) -> DomainResult<HashMap<Id, PaymentMethod>> {
    let sub_keys: Vec<(Scope, Id)> = invoices
        .iter()
        .filter(|(_, i)| i.direction == Direction::Debit)
        .filter_map(|(s, i)| Some(((*s).clone(), i.subscription.clone()?)))
        .collect();
    let customer_keys: Vec<(Scope, Id)> = invoices.iter().map(|(s, i)| ((*s).clone(), i.customer.clone())).collect();
    let sub_methods: HashMap<Id, Id> = p
        .subscriptions
        .get_many(&sub_keys)
        .await?
        .into_iter()
        .filter_map(|s| Some((s.id, s.payment_method?)))
        .collect();
    let customers: HashMap<Id, crate::customer::Customer> =
        p.customers.get_many(&customer_keys).await?.into_iter().map(|c| (c.id.clone(), c)).collect();
    let chosen: Vec<(Id, Scope, Id, Direction)> = invoices
        .iter()
        .filter_map(|(scope, inv)| {
            let customer = customers.get(&inv.customer);
            let method = match inv.direction {
                Direction::Debit => {
                    let sub = inv.subscription.as_ref().and_then(|s| sub_methods.get(s));
                    method_for_charge(sub, customer.and_then(|c| c.default_payment_method.as_ref())).ok()?
                }
                Direction::Payout => {
                    destination_for_payout(customer.and_then(|c| c.default_payout_destination.as_ref())).ok()?
                }
            };
            Some((inv.id.clone(), (*scope).clone(), method, inv.direction))
        })
        .collect();
    let keys_of = |d: Direction| -> Vec<(Scope, Id)> {
        chosen.iter().filter(|c| c.3 == d).map(|(_, s, m, _)| (s.clone(), m.clone())).collect()
    };
    let (debit_keys, payout_keys) = (keys_of(Direction::Debit), keys_of(Direction::Payout));
    let mut methods: HashMap<Id, PaymentMethod> = HashMap::new();
    if !debit_keys.is_empty() {
        methods.extend(p.methods.get_many(&debit_keys).await?.into_iter().map(|m| (m.id.clone(), m)));
    }
    if !payout_keys.is_empty() {
        methods.extend(p.destinations.get_many(&payout_keys).await?.into_iter().map(|m| (m.id.clone(), m)));
    }
    Ok(chosen.into_iter().filter_map(|(inv, _, m, _)| Some((inv, methods.get(&m)?.clone()))).collect())
}

async fn payment_method_for(p: &Ports<'_>, scope: &Scope, inv: &Invoice) -> DomainResult<Option<PaymentMethod>> {
    Ok(methods_for(p, &[(scope, inv)]).await?.remove(&inv.id))
}

/// A new attempt, ready to commit: the transaction (and a retry's invoice transition).
struct NewAttempt {
    index: usize,
    ctx: Context,
    inv: Invoice,
    transaction: Transaction,
    method: PaymentMethod,
    settings: TenantSettings,
}

#[allow(clippy::too_many_arguments)]
fn plan_attempt(
    p: &Ports<'_>,
    index: usize,
    req: &ChargeRequest,
    mut inv: Invoice,
    method: PaymentMethod,
    settings: TenantSettings,
    retrying: bool,
    at: DateTime<Utc>,
) -> DomainResult<(NewAttempt, Changeset)> {
    let ctx = system(&req.scope, "charge-invoice");
    let expected = inv.version;
    let mut events = Vec::new();
    if retrying {
        let change = journal::transition(&mut inv, InvoiceAction::Retry, at)?;
        events.push(invoice_event(&ctx, p.ids, at, &inv, "invoice.retry_started", &change)?);
    }
    let transaction = attempt_transaction(p, &inv, at);
    events.push(ctx.snapshot(p.ids, at, "transaction.created", &transaction));
    let mut writes = create_attempt(&inv, transaction.clone());
    if retrying {
        writes.push(Write::Invoice { invoice: inv.clone(), expected: Some(expected) });
    }
    let change = Changeset { scope: req.scope.clone(), writes, events };
    Ok((NewAttempt { index, ctx, inv, transaction, method, settings }, change))
}

/// Makes attempt `req.attempt` of each request to collect a debit invoice. A retry's transition
/// (charged_with_error → pending) is committed with its transaction, so a retry is never
/// half-made. Results come back in the order of `reqs`.
pub async fn charge_invoices(p: &Ports<'_>, reqs: &[ChargeRequest]) -> Vec<DomainResult<ChargeOutcome>> {
    per_item(reqs.len(), charge_batch(p, reqs, Direction::Debit).await)
}

/// The payout pipeline's step: attempt `req.attempt` of each payout invoice, sent to the
/// customer's payout destination through the gateway's `payout` with the transaction's
/// idempotency key; the same guards as a charge (an unknown outcome is never sent again).
pub async fn pay_out_invoices(p: &Ports<'_>, reqs: &[ChargeRequest]) -> Vec<DomainResult<ChargeOutcome>> {
    per_item(reqs.len(), charge_batch(p, reqs, Direction::Payout).await)
}

async fn charge_batch(
    p: &Ports<'_>,
    reqs: &[ChargeRequest],
    direction: Direction,
) -> DomainResult<Vec<DomainResult<ChargeOutcome>>> {
    let keys: Vec<(Scope, Id)> = reqs.iter().map(|r| (r.scope.clone(), r.invoice.clone())).collect();
    let mut invoices: HashMap<Id, Invoice> =
        p.invoices.get_many(&keys).await?.into_iter().map(|i| (i.id.clone(), i)).collect();
    // Each pipeline moves money one way only: a request that reached the other one (sent before
    // the pipelines were split, say) is handed over to its own queue, never dropped.
    let mut elsewhere = std::collections::HashSet::new();
    invoices.retain(|id, inv| {
        let right = inv.direction == direction;
        if !right {
            elsewhere.insert(id.clone());
        }
        right
    });
    let handed_over = hand_over(p, reqs, &elsewhere, direction).await;
    let found: Vec<(&Scope, &Invoice)> =
        reqs.iter().filter_map(|r| Some((&r.scope, invoices.get(&r.invoice)?))).collect();
    let time = BatchTime::read(p.clocks, p.clock, found.iter().map(|(s, i)| (*s, i.test_clock.as_ref()))).await?;
    let methods = methods_for(p, &found).await?;
    let settings = settings_for(p, found.iter().map(|(s, _)| *s)).await?;
    let mut results: Vec<Option<DomainResult<ChargeOutcome>>> = reqs.iter().map(|_| None).collect();
    let mut one_by_one = Vec::new();
    let (mut attempts, mut changes) = (Vec::new(), Vec::new());
    for (i, req) in reqs.iter().enumerate() {
        if elsewhere.contains(&req.invoice) {
            results[i] = Some(handed_over.clone().map(|()| ChargeOutcome::Skipped));
            continue;
        }
        // (`get`, not `remove`: a request delivered twice in one batch is decided like any other
        // duplicate, by its attempt's transaction already existing.)
        let Some(inv) = invoices.get(&req.invoice).cloned() else {
            results[i] = Some(Err(DomainError::conflict(
                "invoice_not_visible",
                format!("invoice {} is not visible yet; retry", req.invoice),
            )));
            continue;
        };
        let clock = inv.test_clock.clone();
        let timing = time
            .now(clock.as_ref())
            .and_then(|now| Ok((now, time.step_time(clock.as_ref(), inv.attempt_time(req.attempt))?)));
        let (now, at) = match timing {
            Ok(t) => t,
            Err(e) => {
                results[i] = Some(Err(e));
                continue;
            }
        };
        let tenant = settings.get(&req.scope).cloned().unwrap_or_default();
        match (attempt_of(&inv, req, now), methods.get(&inv.id).cloned()) {
            (Attempt::Stale, _) => results[i] = Some(Ok(ChargeOutcome::Skipped)),
            (Attempt::New { retrying }, Some(method)) => {
                match plan_attempt(p, i, req, inv, method, tenant, retrying, at) {
                    Ok((attempt, change)) => {
                        attempts.push(attempt);
                        changes.push(change);
                    }
                    Err(e) => results[i] = Some(Err(e)),
                }
            }
            // No payment method: recorded as a failed attempt, one by one.
            (Attempt::New { .. }, None) => one_by_one.push(i),
        }
    }
    let mut made = Vec::new();
    for (attempt, committed) in attempts.into_iter().zip(p.unit.commit_each(changes).await) {
        match committed {
            Ok(()) => made.push(attempt),
            // The attempt exists already (a redelivery) or the invoice moved: decided one by one.
            Err(DomainError::Conflict { .. }) => one_by_one.push(attempt.index),
            Err(e) => results[attempt.index] = Some(Err(e)),
        }
    }
    let answers: Vec<(NewAttempt, DomainResult<Answer>)> = stream::iter(made)
        .map(|a| async move {
            let answer = ask_gateways(p, &a.ctx, &a.inv, &a.transaction, &a.method, &a.settings).await;
            (a, answer)
        })
        .buffer_unordered(GATEWAY_CONCURRENCY)
        .collect()
        .await;
    let (mut accepted, mut references) = (Vec::new(), Vec::new());
    for (a, answer) in answers {
        match answer {
            Ok(Answer::Accepted { gateway, reference, echoes }) => {
                references.push(reference_change(p, &a.ctx, a.transaction.clone(), &gateway, &reference, echoes));
                accepted.push((a.index, a.transaction.id, reference));
            }
            Ok(other) => {
                results[a.index] = Some(record_answer(p, &a.ctx, &a.inv.id, a.transaction, other, &a.settings).await);
            }
            Err(e) => results[a.index] = Some(Err(e)),
        }
    }
    for ((index, transaction, reference), committed) in accepted.into_iter().zip(p.unit.commit_each(references).await) {
        results[index] = Some(match committed {
            // A conflict means the outcome already arrived and recorded the reference.
            Ok(()) | Err(DomainError::Conflict { .. }) => Ok(ChargeOutcome::Requested { transaction, reference }),
            Err(e) => Err(e),
        });
    }
    for i in one_by_one {
        results[i] = Some(charge_one(p, &reqs[i]).await);
    }
    Ok(results.into_iter().map(|r| r.unwrap_or(Ok(ChargeOutcome::Skipped))).collect())
}

/// Sends the requests whose invoices move money the other way to that direction's queue.
async fn hand_over(
    p: &Ports<'_>,
    reqs: &[ChargeRequest],
    elsewhere: &std::collections::HashSet<Id>,
    direction: Direction,
) -> DomainResult<()> {
    let other = match direction {
        Direction::Debit => Direction::Payout,
        Direction::Payout => Direction::Debit,
    };
    let messages: Vec<_> = reqs
        .iter()
        .filter(|r| elsewhere.contains(&r.invoice))
        .map(|r| r.message_for(other))
        .collect::<DomainResult<_>>()?;
    if messages.is_empty() {
        return Ok(());
    }
    tracing::warn!(count = messages.len(), "requests on the other pipeline's queue; handed over");
    p.queue.send(p.queues.for_direction(other)?, &messages).await
}

/// One request, reading everything afresh: the path for redeliveries, missing methods and races.
async fn charge_one(p: &Ports<'_>, req: &ChargeRequest) -> DomainResult<ChargeOutcome> {
    let scope = &req.scope;
    let ctx = system(scope, "charge-invoice");
    let mut inv = p.invoices.get(scope, &req.invoice).await?.ok_or_else(|| {
        DomainError::conflict("invoice_not_visible", format!("invoice {} is not visible yet; retry", req.invoice))
    })?;
    let time = BatchTime::read(p.clocks, p.clock, std::iter::once((scope, inv.test_clock.as_ref()))).await?;
    let now = time.now(inv.test_clock.as_ref())?;
    let at = time.step_time(inv.test_clock.as_ref(), inv.attempt_time(req.attempt))?;
    let settings = p.settings.get(scope).await?;
    let Attempt::New { retrying } = attempt_of(&inv, req, now) else { return Ok(ChargeOutcome::Skipped) };
    // (`attempt_of` said the invoice is pending with this very attempt: it is the current one.)
    if !retrying && let Some(existing) = attempt_made(p, scope, &inv).await? {
        if existing.gateway_reference.is_some() || existing.status != TransactionStatus::Pending {
            return Ok(ChargeOutcome::Skipped);
        }
        if !existing.unsent {
            // An earlier run made this attempt and may have reached a gateway before it stopped:
            // its outcome is unknown, and it is never sent again.
            let answer = Answer::Unknown { gateway: existing.gateway.clone(), reason: "interrupted".into() };
            return record_answer(p, &ctx, &inv.id, existing, answer, &settings).await;
        }
        // Every gateway refused it before processing: safe to send again, with the same key.
        return match payment_method_for(p, scope, &inv).await? {
            Some(m) => request_money(p, &ctx, &inv, existing, &m, &settings).await,
            None => Ok(ChargeOutcome::Skipped),
        };
    }
    let Some(method) = payment_method_for(p, scope, &inv).await? else {
        let reason = match inv.direction {
            Direction::Debit => "no_payment_method",
            Direction::Payout => "no_payout_destination",
        };
        let expected = inv.version;
        let mut events = Vec::new();
        if retrying {
            let change = journal::transition(&mut inv, InvoiceAction::Retry, at)?;
            events.push(invoice_event(&ctx, p.ids, at, &inv, "invoice.retry_started", &change)?);
        }
        fail_invoice(p, &ctx, &mut inv, reason, at, &settings, &mut events)?;
        commit_failure(p, &ctx, inv, expected, Vec::new(), events, at, &settings).await?;
        return Ok(ChargeOutcome::Failed { reason: reason.into() });
    };
    let (attempt, change) = plan_attempt(p, 0, req, inv, method, settings, retrying, at)?;
    match p.unit.commit(scope, change.writes, change.events).await {
        Ok(()) => {}
        Err(DomainError::Conflict { .. }) => return Ok(ChargeOutcome::Skipped),
        Err(e) => return Err(e),
    }
    request_money(p, &ctx, &attempt.inv, attempt.transaction, &attempt.method, &attempt.settings).await
}

/// What the gateways said to one attempt.
enum Answer {
    Accepted {
        gateway: String,
        reference: String,
        /// The gateway names Billy's ids in every event it sends about this movement.
        echoes: bool,
    },
    Declined {
        gateway: String,
        code: String,
    },
    /// The chosen gateway may have processed it: nothing more is sent anywhere.
    Unknown {
        gateway: String,
        reason: String,
    },
    /// Every gateway that could take it refused before processing: the attempt may go again.
    NotSent {
        reason: String,
    },
}

/// Calls the gateways the routing rules choose, among those holding a token for the method, until
/// one decides; only a call that was not sent moves on to the next.
async fn ask_gateways(
    p: &Ports<'_>,
    ctx: &Context,
    inv: &Invoice,
    transaction: &Transaction,
    method: &PaymentMethod,
    settings: &TenantSettings,
) -> DomainResult<Answer> {
    let registry = p.gateways.for_scope(&ctx.scope).await?;
    let table = settings.routing(&registry);
    let money = Money::new(transaction.amount, transaction.currency);
    // The breaker runs on real time: gateways fail in real time, whatever a test clock says.
    let real = p.clock.now();
    let all = table.route(method, money, transaction.id.as_str(), |_| true);
    if all.is_empty() {
        return Ok(Answer::Declined { gateway: String::new(), code: "no_gateway_for_method".into() });
    }
    let route: Vec<_> = all.into_iter().filter(|c| p.breaker.available(&c.gateway, real)).collect();
    let mut last_error = String::from("every gateway for this method is paused by its circuit breaker");
    for choice in route {
        let Some(gateway) = registry.get(&choice.gateway) else {
            last_error = format!("gateway {} is not configured", choice.gateway);
            continue;
        };
        let movement = MoneyMovement {
            idempotency_key: transaction.idempotency_key.clone(),
            amount: Money::new(transaction.amount, transaction.currency),
            method_type: method.kind,
            token: choice.token.clone(),
            transaction: transaction.id.to_string(),
            scope: ctx.scope.key(),
            description: format!("Invoice {}", inv.id),
            customer: choice.customer.clone(),
        };
        let answer = match transaction.kind {
            TransactionType::Payout => gateway.payout(&movement).await,
            _ => gateway.charge(&movement).await,
        };
        match &answer {
            Ok(_) => p.breaker.succeeded(&choice.gateway),
            Err(_) => p.breaker.failed(&choice.gateway, table.breaker, real),
        }
        match answer {
            Ok(GatewayResponse::Accepted { reference }) => {
                let echoes = gateway.echoes_billy_ids();
                return Ok(Answer::Accepted { gateway: choice.gateway, reference, echoes });
            }
            Ok(GatewayResponse::Declined { code, .. }) => {
                return Ok(Answer::Declined { gateway: choice.gateway, code });
            }
            Err(GatewayError::Unknown(reason)) => return Ok(Answer::Unknown { gateway: choice.gateway, reason }),
            Err(GatewayError::NotSent(reason)) => {
                tracing::warn!(gateway = %choice.gateway, transaction = %transaction.id, %reason, "gateway not reached; trying the next");
                last_error = format!("{}: {reason}", choice.gateway);
            }
        }
    }
    Ok(Answer::NotSent { reason: last_error })
}

/// Records an accepted attempt's gateway reference, without a new version, so it never races the
/// webhook that may already be settling the transaction (which records it too). The look-up item
/// from the reference to the transaction is kept only for a gateway whose events may name the
/// payment alone (a dispute, say); one that `echoes` Billy's ids in every event needs none.
fn reference_change(
    p: &Ports<'_>,
    ctx: &Context,
    mut transaction: Transaction,
    gateway: &str,
    reference: &str,
    echoes: bool,
) -> Changeset {
    transaction.gateway = gateway.to_owned();
    transaction.gateway_reference = Some(reference.to_owned());
    let note = ctx.snapshot(p.ids, transaction.created, "transaction.requested", &transaction).as_note();
    let writes = vec![Write::TransactionReference {
        transaction: transaction.id,
        gateway: gateway.to_owned(),
        reference: reference.to_owned(),
        lookup: !echoes,
    }];
    Changeset { scope: ctx.scope.clone(), writes, events: vec![note] }
}

/// Asks the gateways and records what they said, for one attempt.
async fn request_money(
    p: &Ports<'_>,
    ctx: &Context,
    inv: &Invoice,
    transaction: Transaction,
    method: &PaymentMethod,
    settings: &TenantSettings,
) -> DomainResult<ChargeOutcome> {
    match ask_gateways(p, ctx, inv, &transaction, method, settings).await? {
        Answer::Accepted { gateway, reference, echoes } => {
            let id = transaction.id.clone();
            let change = reference_change(p, ctx, transaction, &gateway, &reference, echoes);
            match p.unit.commit(&ctx.scope, change.writes, change.events).await {
                Ok(()) | Err(DomainError::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
            Ok(ChargeOutcome::Requested { transaction: id, reference })
        }
        other => record_answer(p, ctx, &inv.id, transaction, other, settings).await,
    }
}

/// Records an answer that is not an acceptance: a decline fails the attempt (and the invoice
/// follows dunning); a lost answer makes the transaction `unknown`; a call that reached no gateway
/// is marked safe to send again and the step fails, so its queue brings it back.
async fn record_answer(
    p: &Ports<'_>,
    ctx: &Context,
    invoice: &Id,
    mut transaction: Transaction,
    answer: Answer,
    settings: &TenantSettings,
) -> DomainResult<ChargeOutcome> {
    let at = transaction.created;
    let expected = transaction.version;
    match answer {
        Answer::Accepted { .. } => Err(DomainError::unexpected("an acceptance is recorded by its reference")),
        Answer::Declined { gateway, code } => {
            let mut inv = p
                .invoices
                .get(&ctx.scope, invoice)
                .await?
                .ok_or_else(|| DomainError::unexpected("invoice vanished"))?;
            let expected_inv = inv.version;
            if !gateway.is_empty() {
                transaction.gateway = gateway;
            }
            transaction.settle(TransactionStatus::Failed, at, Some(&code))?;
            let mut events = Vec::new();
            transaction.retryable = fail_invoice(p, ctx, &mut inv, &code, at, settings, &mut events)?;
            events.insert(0, ctx.snapshot(p.ids, at, "transaction.failed", &transaction).because(Some(&code)));
            let writes = vec![Write::Transaction { transaction, expected: Some(expected) }];
            commit_failure(p, ctx, inv, expected_inv, writes, events, at, settings).await?;
            Ok(ChargeOutcome::Failed { reason: code })
        }
        Answer::Unknown { gateway, reason } => {
            let id = transaction.id.clone();
            transaction.mark_unknown(&gateway, &reason)?;
            let event = ctx.snapshot(p.ids, at, "transaction.outcome_unknown", &transaction).because(Some(&reason));
            let write = Write::Transaction { transaction, expected: Some(expected) };
            match p.unit.commit(&ctx.scope, vec![write], vec![event]).await {
                // A conflict: the outcome arrived meanwhile.
                Ok(()) | Err(DomainError::Conflict { .. }) => Ok(ChargeOutcome::Unknown { transaction: id }),
                Err(e) => Err(e),
            }
        }
        Answer::NotSent { reason } => {
            if !transaction.unsent {
                transaction.unsent = true;
                transaction.version += 1;
                let event = ctx.snapshot(p.ids, at, "transaction.not_sent", &transaction).because(Some(&reason));
                p.unit
                    .commit(&ctx.scope, vec![Write::Transaction { transaction, expected: Some(expected) }], vec![event])
                    .await?;
            }
            // Unavailable, not unexpected: the queue's own timeout (three minutes) spaces its next
            // tries, rather than the early retry a store stall gets (see billy_lambda::sqs).
            Err(DomainError::Unavailable(format!("no gateway could be reached ({reason}); the attempt goes again")))
        }
    }
}

/// Records a failed attempt: retried later (`true`) per the dunning policy (a debit) or the payout
/// retry policy, unless the failure is permanent. A debit with no attempt left is given up
/// (`failed`); a payout stays `payout_failed`, still owed.
pub(super) fn fail_invoice(
    p: &Ports<'_>,
    ctx: &Context,
    inv: &mut Invoice,
    reason: &str,
    at: DateTime<Utc>,
    settings: &TenantSettings,
    events: &mut Vec<crate::audit::AuditEvent>,
) -> DomainResult<bool> {
    let next = settings.next_attempt_at(inv, reason, at);
    let change = journal::fail(inv, reason, next, at)?;
    let failed = match inv.direction {
        Direction::Payout => "payout.failed",
        Direction::Debit => "invoice.payment_failed",
    };
    events.push(invoice_event(ctx, p.ids, at, inv, failed, &change)?);
    if next.is_none() && inv.direction == Direction::Debit {
        let change = journal::transition(inv, InvoiceAction::GiveUp, at)?;
        events.push(invoice_event(ctx, p.ids, at, inv, "invoice.uncollectible", &change)?);
    }
    Ok(next.is_some())
}

/// Commits a failed invoice (with `writes` made alongside) and, when it was given up, the
/// subscription's consequence.
#[allow(clippy::too_many_arguments)]
pub(super) async fn commit_failure(
    p: &Ports<'_>,
    ctx: &Context,
    inv: Invoice,
    expected: u64,
    mut writes: Vec<Write>,
    mut events: Vec<crate::audit::AuditEvent>,
    at: DateTime<Utc>,
    settings: &TenantSettings,
) -> DomainResult<()> {
    let scope = &ctx.scope;
    if inv.status == InvoiceStatus::Failed
        && let Some(sid) = &inv.subscription
        && let Some(sub) = p.subscriptions.get(scope, sid).await?
        && let Some((write, event)) = uncollectible_consequence(&settings.dunning, ctx, p.ids, sub, at)?
    {
        events.push(event);
        writes.push(write);
    }
    writes.push(Write::Invoice { invoice: inv, expected: Some(expected) });
    p.unit.commit(scope, writes, events).await
}
