//! Gateway events: settling transactions in event-time order, moving invoices (paid, or failed
//! with dunning) and subscriptions (recovered, past due, canceled), and disputes. A batch of events
//! is read together, committed in as few store requests as possible, and published at once.

use super::{BatchTime, invoice_event, now_for, per_item, subscription_event, uncollectible_consequence};
use crate::audit::{Actor, AuditEvent, Change, Context};
use crate::dunning::DunningPolicy;
use crate::error::{DomainError, DomainResult};
use crate::gateway::{GatewayEvent, GatewayEventKind};
use crate::ids::{Id, IdGenerator, IdKind};
use crate::invoice::{Invoice, InvoiceAction, InvoiceStatus};
use crate::journal;
use crate::ports::{
    Changeset, Clock, DomainEvent, EventBus, InvoiceRepository, SubscriptionRepository, TestClockRepository,
    TransactionRepository, UnitOfWork, Write,
};
use crate::subscription::{Subscription, SubscriptionAction, SubscriptionStatus};
use crate::tenant::Scope;
use crate::transaction::{Transaction, TransactionStatus};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

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

/// What one event will do once committed. (Short-lived, one per event of a batch: the size of
/// the commit variant does not matter.)
#[allow(clippy::large_enum_variant)]
enum Planned {
    /// Seen before. What it announced is announced again (same ids): the first time may have
    /// crashed between its commit and its publication.
    Duplicate { invoice: Invoice, announced: Vec<&'static str>, now: DateTime<Utc> },
    /// A dispute: applied one by one after the batch, on a fresh read of its invoice.
    Dispute,
    Commit {
        now: DateTime<Utc>,
        change: Changeset,
        /// A stale event's note: a conflict then means it was journaled already.
        stale: bool,
        invoice: Invoice,
        published: Vec<&'static str>,
    },
}

fn context(scope: &Scope, event: &GatewayEvent) -> Context {
    Context {
        scope: scope.clone(),
        actor: Actor::Gateway { gateway: event.gateway.clone(), event_id: event.id.clone() },
        request_id: None,
    }
}

/// Which transaction an event is about: by the recorded reference, or, when the outcome overtook
/// the recording of the reference, by the metadata the gateway echoed.
fn locate(event: &GatewayEvent, by_reference: Option<(Scope, Id)>) -> DomainResult<(Scope, Id)> {
    if let Some(found) = by_reference {
        return Ok(found);
    }
    match (event.scope.as_deref().and_then(Scope::parse_key), &event.transaction) {
        (Some(scope), Some(txn)) => Ok((scope, Id::parse(IdKind::Transaction, txn, "transaction")?)),
        _ => Err(DomainError::conflict(
            "reference_unknown",
            format!("no transaction for {} {} yet; retry", event.gateway, event.reference),
        )),
    }
}

/// Applies verified gateway events. Results come back in the order of `events`; domain events of
/// what was applied go out together after the commits.
pub async fn apply_gateway_events(deps: EventDeps<'_>, events: &[GatewayEvent]) -> Vec<DomainResult<EventOutcome>> {
    per_item(events.len(), events_batch(deps, events).await)
}

async fn events_batch(deps: EventDeps<'_>, events: &[GatewayEvent]) -> DomainResult<Vec<DomainResult<EventOutcome>>> {
    let refs: Vec<(String, String)> = events.iter().map(|e| (e.gateway.clone(), e.reference.clone())).collect();
    let mut results: Vec<Option<DomainResult<EventOutcome>>> = events.iter().map(|_| None).collect();
    let mut located = Vec::new();
    for (i, (event, found)) in events.iter().zip(deps.transactions.by_references(&refs).await?).enumerate() {
        match locate(event, found) {
            Ok((scope, txn)) => located.push((i, scope, txn)),
            Err(e) => results[i] = Some(Err(e)),
        }
    }
    let keys: Vec<(Scope, Id)> = located.iter().map(|(_, s, t)| (s.clone(), t.clone())).collect();
    let txns: HashMap<Id, Transaction> =
        deps.transactions.get_many(&keys).await?.into_iter().map(|t| (t.id.clone(), t)).collect();
    let keys: Vec<(Scope, Id)> =
        located.iter().filter_map(|(_, s, t)| Some((s.clone(), txns.get(t)?.invoice.clone()))).collect();
    let invoices: HashMap<Id, Invoice> =
        deps.invoices.get_many(&keys).await?.into_iter().map(|i| (i.id.clone(), i)).collect();
    let scoped: Vec<(&Scope, &Invoice)> =
        located.iter().filter_map(|(_, s, t)| Some((s, invoices.get(&txns.get(t)?.invoice)?))).collect();
    let keys: Vec<(Scope, Id)> =
        scoped.iter().filter_map(|(s, i)| Some(((*s).clone(), i.subscription.clone()?))).collect();
    let subs: HashMap<Id, Subscription> =
        deps.subscriptions.get_many(&keys).await?.into_iter().map(|s| (s.id.clone(), s)).collect();
    let time =
        BatchTime::read(deps.clocks, deps.clock, scoped.iter().map(|(s, i)| (*s, i.test_clock.as_ref()))).await?;

    let (mut planned, mut changes, mut disputes, mut outgoing) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (i, scope, txn_id) in located {
        let plan = (|| {
            let txn = txns.get(&txn_id).cloned().ok_or_else(|| DomainError::unexpected("transaction vanished"))?;
            let inv = invoices.get(&txn.invoice).cloned().ok_or_else(|| DomainError::unexpected("invoice vanished"))?;
            let now = time.now(inv.test_clock.as_ref())?;
            let sub = inv.subscription.as_ref().and_then(|s| subs.get(s)).cloned();
            plan_event(deps, &events[i], &scope, txn, inv, sub, now)
        })();
        match plan {
            Ok(Planned::Duplicate { invoice, announced, now }) => {
                outgoing
                    .extend(domain_events(&scope, &events[i], &invoice, &announced, now).into_iter().map(|e| (i, e)));
                results[i] = Some(Ok(EventOutcome::Duplicate));
            }
            Ok(Planned::Dispute) => disputes.push((i, scope)),
            Ok(Planned::Commit { now, change, stale, invoice, published }) => {
                changes.push(change);
                planned.push((i, scope, stale, invoice, published, now));
            }
            Err(e) => results[i] = Some(Err(e)),
        }
    }
    let committed = deps.unit.commit_each(changes).await;
    for ((i, scope, stale, inv, published, now), committed) in planned.into_iter().zip(committed) {
        results[i] = Some(match (committed, stale) {
            (Ok(()), true) => Ok(EventOutcome::Stale),
            (Err(DomainError::Conflict { .. }), true) => Ok(EventOutcome::Duplicate),
            (Ok(()), false) => {
                outgoing.extend(domain_events(&scope, &events[i], &inv, &published, now).into_iter().map(|e| (i, e)));
                Ok(EventOutcome::Applied { invoice: inv.id, status: inv.status })
            }
            (Err(e), _) => Err(e),
        });
    }
    for (i, scope) in disputes {
        let mut announced = Vec::new();
        results[i] = Some(apply_dispute(deps, &scope, &events[i], &mut announced).await);
        outgoing.extend(announced.into_iter().map(|e| (i, e)));
    }
    // Domain events go out after the commits. An event whose announcement failed fails too, so
    // the queue brings it back; it is then a duplicate, which announces again under the same ids.
    if !outgoing.is_empty() {
        let announcements: Vec<DomainEvent> = outgoing.iter().map(|(_, e)| e.clone()).collect();
        if let Err(e) = deps.bus.publish(&announcements).await {
            for (i, _) in &outgoing {
                results[*i] = Some(Err(e.clone()));
            }
        }
    }
    Ok(results.into_iter().map(|r| r.unwrap_or(Ok(EventOutcome::Duplicate))).collect())
}

/// Decides what one settlement event changes, given what is stored now.
fn plan_event(
    deps: EventDeps<'_>,
    event: &GatewayEvent,
    scope: &Scope,
    mut txn: Transaction,
    mut inv: Invoice,
    sub: Option<Subscription>,
    now: DateTime<Utc>,
) -> DomainResult<Planned> {
    let ctx = context(scope, event);
    let (txn_expected, inv_expected) = (txn.version, inv.version);
    let target = match event.kind {
        GatewayEventKind::ChargeSucceeded | GatewayEventKind::PayoutPaid => TransactionStatus::Succeeded,
        GatewayEventKind::ChargeFailed | GatewayEventKind::PayoutFailed => TransactionStatus::Failed,
        _ => return Ok(Planned::Dispute),
    };
    if txn.status == target && txn.last_event_at.is_some_and(|t| t >= event.occurred_at) {
        let announced = if txn.last_event_at == Some(event.occurred_at) {
            announced_by(target, &txn, &inv, sub.as_ref(), deps.dunning)
        } else {
            Vec::new()
        };
        return Ok(Planned::Duplicate { invoice: inv, announced, now });
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
        // A note is not a new version: the applied marker keeps a replay from journaling it twice.
        let marker = Write::GatewayEventApplied { gateway: event.gateway.clone(), event_id: event.id.clone() };
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
        let change = Changeset { scope: scope.clone(), writes: vec![marker], events: vec![note] };
        return Ok(Planned::Commit { now, change, stale: true, invoice: inv, published: Vec::new() });
    }
    let action = if target == TransactionStatus::Succeeded { "transaction.succeeded" } else { "transaction.failed" };
    let mut events = vec![ctx.snapshot(deps.ids, now, action, &txn).because(event.failure_code.as_deref())];
    let mut writes = Vec::new();
    let mut published = Vec::new();
    // Only the invoice's current attempt moves it; an old attempt's late news is journaled above.
    if txn.attempt == inv.attempt_count && matches!(inv.status, InvoiceStatus::Pending) {
        if target == TransactionStatus::Succeeded {
            settle_paid(deps, &ctx, &mut inv, sub, now, &mut writes, &mut events, &mut published)?;
        } else {
            settle_failed(deps, &ctx, &mut inv, sub, event, now, &mut writes, &mut events, &mut published)?;
        }
        writes.push(Write::Invoice { invoice: inv.clone(), expected: Some(inv_expected) });
    }
    // The transaction's versioned write is what makes this once-only: a replay of the event finds
    // it settled at that event time (a duplicate), and a concurrent one loses the version race.
    writes.push(Write::Transaction { transaction: txn, expected: Some(txn_expected) });
    Ok(Planned::Commit {
        now,
        change: Changeset { scope: scope.clone(), writes, events },
        stale: false,
        invoice: inv,
        published,
    })
}

#[allow(clippy::too_many_arguments)]
fn settle_paid(
    deps: EventDeps<'_>,
    ctx: &Context,
    inv: &mut Invoice,
    sub: Option<Subscription>,
    now: DateTime<Utc>,
    writes: &mut Vec<Write>,
    events: &mut Vec<AuditEvent>,
    published: &mut Vec<&'static str>,
) -> DomainResult<()> {
    let change = journal::transition(inv, InvoiceAction::Succeed, now)?;
    let paid = if inv.direction == crate::plan::Direction::Payout { "payout.paid" } else { "invoice.paid" };
    events.push(invoice_event(ctx, deps.ids, now, inv, paid, &change)?);
    published.push(paid);
    if let Some(mut sub) = sub.filter(|s| s.status == SubscriptionStatus::PastDue) {
        let expected = sub.version;
        sub.apply(SubscriptionAction::PaymentRecovered)?;
        events.push(subscription_event(ctx, deps.ids, now, &sub, "subscription.recovered", None));
        writes.push(Write::Subscription { subscription: sub, expected: Some(expected) });
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn settle_failed(
    deps: EventDeps<'_>,
    ctx: &Context,
    inv: &mut Invoice,
    sub: Option<Subscription>,
    event: &GatewayEvent,
    now: DateTime<Utc>,
    writes: &mut Vec<Write>,
    events: &mut Vec<AuditEvent>,
    published: &mut Vec<&'static str>,
) -> DomainResult<()> {
    let reason = event.failure_code.clone().unwrap_or_else(|| "failed".into());
    let next = deps.dunning.next_attempt_at(inv.attempt_count, now);
    let change = journal::fail(inv, &reason, next, now)?;
    events.push(invoice_event(ctx, deps.ids, now, inv, "invoice.payment_failed", &change)?);
    published.push("invoice.payment_failed");
    if next.is_some() {
        return Ok(());
    }
    let change = journal::transition(inv, InvoiceAction::GiveUp, now)?;
    events.push(invoice_event(ctx, deps.ids, now, inv, "invoice.uncollectible", &change)?);
    if let Some(sub) = sub
        && let Some((write, event, action)) = uncollectible_consequence(deps.dunning, ctx, deps.ids, sub, now)?
    {
        events.push(event);
        published.push(action);
        writes.push(write);
    }
    Ok(())
}

/// Disputes move a paid invoice to protest, then to chargeback or back to paid. The invoice is
/// read afresh, so a settlement committed earlier in the same batch is seen.
async fn apply_dispute(
    deps: EventDeps<'_>,
    scope: &Scope,
    event: &GatewayEvent,
    outgoing: &mut Vec<DomainEvent>,
) -> DomainResult<EventOutcome> {
    let action = match event.kind {
        GatewayEventKind::DisputeOpened => InvoiceAction::Contest,
        GatewayEventKind::DisputeWon => InvoiceAction::DisputeWon,
        GatewayEventKind::DisputeLost => InvoiceAction::DisputeLost,
        // Refund outcomes are applied by the refund use case, which is not part of this pipeline.
        _ => return Ok(EventOutcome::Stale),
    };
    let name = match action {
        InvoiceAction::Contest => "invoice.disputed",
        InvoiceAction::DisputeWon => "invoice.dispute_won",
        _ => "invoice.charged_back",
    };
    let (_, txn_id) = locate(event, deps.transactions.by_reference(&event.gateway, &event.reference).await?)?;
    let txn =
        deps.transactions.get(scope, &txn_id).await?.ok_or_else(|| DomainError::unexpected("transaction vanished"))?;
    let mut inv =
        deps.invoices.get(scope, &txn.invoice).await?.ok_or_else(|| DomainError::unexpected("invoice vanished"))?;
    let now = now_for(deps.clocks, deps.clock, scope, inv.test_clock.as_ref()).await?;
    if deps.transactions.event_applied(&event.gateway, &event.id).await? {
        outgoing.extend(domain_events(scope, event, &inv, &[name], now));
        return Ok(EventOutcome::Duplicate);
    }
    let expected = inv.version;
    let change = match journal::transition(&mut inv, action, now) {
        Ok(change) => change,
        Err(DomainError::IllegalTransition { .. }) => return Ok(EventOutcome::Stale),
        Err(e) => return Err(e),
    };
    let ctx = context(scope, event);
    let events = vec![invoice_event(&ctx, deps.ids, now, &inv, name, &change)?];
    let writes = vec![
        Write::Invoice { invoice: inv.clone(), expected: Some(expected) },
        Write::GatewayEventApplied { gateway: event.gateway.clone(), event_id: event.id.clone() },
    ];
    // A conflict (the invoice moved, or the same event applied meanwhile) fails this event so the
    // queue brings it back, when the duplicate check above tells the two apart.
    deps.unit.commit(scope, writes, events).await?;
    outgoing.extend(domain_events(scope, event, &inv, &[name], now));
    Ok(EventOutcome::Applied { invoice: inv.id, status: inv.status })
}

/// What applying a settlement announced, worked out again from what it left behind: the invoice's
/// news when this was its current attempt, and the subscription's when the invoice was given up.
fn announced_by(
    target: TransactionStatus,
    txn: &Transaction,
    inv: &Invoice,
    sub: Option<&Subscription>,
    dunning: &DunningPolicy,
) -> Vec<&'static str> {
    if txn.attempt != inv.attempt_count {
        return Vec::new();
    }
    if target == TransactionStatus::Succeeded {
        return vec![if inv.direction == crate::plan::Direction::Payout { "payout.paid" } else { "invoice.paid" }];
    }
    let mut kinds = vec!["invoice.payment_failed"];
    if inv.status == InvoiceStatus::Failed {
        match (sub.map(|s| s.status), dunning.final_action) {
            (Some(SubscriptionStatus::Canceled), _) => kinds.push("subscription.canceled"),
            (Some(SubscriptionStatus::PastDue), crate::dunning::FinalAction::PastDue) => {
                kinds.push("subscription.past_due");
            }
            _ => {}
        }
    }
    kinds
}

/// The domain events announcing what one gateway event did to an invoice. Their ids derive from
/// the gateway event, so an announcement made again (after a crash before publication) carries
/// the same ids and subscribers can drop the repeat. `now` is the scope's time (a test clock's).
fn domain_events(
    scope: &Scope,
    event: &GatewayEvent,
    inv: &Invoice,
    kinds: &[&str],
    now: DateTime<Utc>,
) -> Vec<DomainEvent> {
    kinds
        .iter()
        .map(|k| DomainEvent {
            id: Id::derived(IdKind::Event, event.occurred_at, &format!("{}:{}:{k}", event.gateway, event.id)),
            kind: (*k).to_owned(),
            scope: scope.clone(),
            occurred_at: now,
            data: serde_json::json!({"invoice": inv.id, "customer": inv.customer, "subscription": inv.subscription, "status": inv.status, "total": inv.total, "currency": inv.currency}),
        })
        .collect()
}
