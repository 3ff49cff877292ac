//! Gateway events: settling transactions in event-time order, moving invoices (paid, or failed
//! with dunning; canceled when a void is confirmed; refunded when a refund is), subscriptions
//! (recovered, past due, canceled), and disputes (ending in a chargeback transaction when lost). A batch of events
//! is read together and committed in as few store requests as possible. What they change is
//! announced from the audit journal's stream, never from here.

use super::{BatchTime, invoice_event, per_item, subscription_event, uncollectible_consequence};
use crate::audit::{Actor, AuditEvent, Change, Context};
use crate::error::{DomainError, DomainResult};
use crate::gateway::{GatewayEvent, GatewayEventKind};
use crate::ids::{Id, IdKind};
use crate::invoice::{Invoice, InvoiceAction, InvoiceStatus};
use crate::journal;
use crate::ports::{Changeset, Ports, Write};
use crate::settings::TenantSettings;
use crate::subscription::{Subscription, SubscriptionAction, SubscriptionStatus};
use crate::tenant::Scope;
use crate::transaction::{Transaction, TransactionStatus, TransactionType};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

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
    Duplicate,
    /// A dispute: applied one by one after the batch, on a fresh read of its invoice.
    Dispute,
    Commit {
        change: Changeset,
        /// A stale event's note: a conflict then means it was journaled already.
        stale: bool,
        invoice: Invoice,
    },
}

fn context(scope: &Scope, event: &GatewayEvent) -> Context {
    Context::new(scope.clone(), Actor::Gateway { gateway: event.gateway.clone(), event_id: event.id.clone() }, None)
}

/// Which transaction an event is about: by the reference Billy recorded for the gateway's payment,
/// or, when there is none (a gateway that echoes Billy's ids keeps none; or the outcome overtook
/// the recording, or the answer was lost), by the metadata the gateway echoed. An event that came
/// to a tenant's own account may only touch that tenant's transactions.
fn locate(event: &GatewayEvent, by_reference: Option<(Scope, Id)>) -> DomainResult<(Scope, Id)> {
    let found = match (by_reference, event.scope.as_deref().and_then(Scope::parse_key), &event.transaction) {
        (Some(found), _, _) => found,
        (None, Some(scope), Some(txn)) => (scope, Id::parse(IdKind::Transaction, txn, "transaction")?),
        _ => {
            return Err(DomainError::conflict(
                "reference_unknown",
                format!("no transaction for {} {} yet; retry", event.gateway, event.reference),
            ));
        }
    };
    if event.account_scope.as_ref().is_some_and(|account| *account != found.0.key()) {
        return Err(DomainError::invalid(
            "event_foreign",
            format!("event {} of a {} account is about another tenant's transaction", event.id, event.gateway),
            None,
        ));
    }
    Ok(found)
}

/// Applies verified gateway events. Results come back in the order of `events`.
pub async fn apply_gateway_events(p: &Ports<'_>, events: &[GatewayEvent]) -> Vec<DomainResult<EventOutcome>> {
    per_item(events.len(), events_batch(p, events).await)
}

async fn events_batch(p: &Ports<'_>, events: &[GatewayEvent]) -> DomainResult<Vec<DomainResult<EventOutcome>>> {
    let refs: Vec<(String, String)> = events.iter().map(|e| (e.gateway.clone(), e.reference.clone())).collect();
    let mut results: Vec<Option<DomainResult<EventOutcome>>> = events.iter().map(|_| None).collect();
    let mut located = Vec::new();
    for (i, (event, found)) in events.iter().zip(p.transactions.by_references(&refs).await?).enumerate() {
        match locate(event, found) {
            Ok((scope, txn)) => located.push((i, scope, txn)),
            Err(e) => results[i] = Some(Err(e)),
        }
    }
    let keys: Vec<(Scope, Id)> = located.iter().map(|(_, s, t)| (s.clone(), t.clone())).collect();
    let txns: HashMap<Id, Transaction> =
        p.transactions.get_many(&keys).await?.into_iter().map(|t| (t.id.clone(), t)).collect();
    let keys: Vec<(Scope, Id)> =
        located.iter().filter_map(|(_, s, t)| Some((s.clone(), txns.get(t)?.invoice.clone()))).collect();
    let invoices: HashMap<Id, Invoice> =
        p.invoices.get_many(&keys).await?.into_iter().map(|i| (i.id.clone(), i)).collect();
    let scoped: Vec<(&Scope, &Invoice)> =
        located.iter().filter_map(|(_, s, t)| Some((s, invoices.get(&txns.get(t)?.invoice)?))).collect();
    let keys: Vec<(Scope, Id)> =
        scoped.iter().filter_map(|(s, i)| Some(((*s).clone(), i.subscription.clone()?))).collect();
    let subs: HashMap<Id, Subscription> =
        p.subscriptions.get_many(&keys).await?.into_iter().map(|s| (s.id.clone(), s)).collect();
    let time = BatchTime::read(p.clocks, p.clock, scoped.iter().map(|(s, i)| (*s, i.test_clock.as_ref()))).await?;
    let mut settings: HashMap<Scope, TenantSettings> = HashMap::new();
    for (_, scope, _) in &located {
        if !settings.contains_key(scope) {
            settings.insert(scope.clone(), p.settings.get(scope).await?);
        }
    }

    let (mut planned, mut changes, mut disputes) = (Vec::new(), Vec::new(), Vec::new());
    for (i, scope, txn_id) in located {
        let plan = (|| {
            let txn = txns.get(&txn_id).cloned().ok_or_else(|| DomainError::unexpected("transaction vanished"))?;
            let inv = invoices.get(&txn.invoice).cloned().ok_or_else(|| DomainError::unexpected("invoice vanished"))?;
            // The outcome of an attempt happens at the attempt's time on a test clock.
            let at = time.step_time(inv.test_clock.as_ref(), Some(txn.created))?;
            let sub = inv.subscription.as_ref().and_then(|s| subs.get(s)).cloned();
            let tenant = settings.get(&scope).cloned().unwrap_or_default();
            plan_event(p, &events[i], &scope, txn, inv, sub, &tenant, at)
        })();
        match plan {
            Ok(Planned::Duplicate) => results[i] = Some(Ok(EventOutcome::Duplicate)),
            Ok(Planned::Dispute) => disputes.push((i, scope)),
            Ok(Planned::Commit { change, stale, invoice }) => {
                changes.push(change);
                planned.push((i, stale, invoice));
            }
            Err(e) => results[i] = Some(Err(e)),
        }
    }
    let committed = p.unit.commit_each(changes).await;
    for ((i, stale, inv), committed) in planned.into_iter().zip(committed) {
        results[i] = Some(match (committed, stale) {
            (Ok(()), true) => Ok(EventOutcome::Stale),
            (Err(DomainError::Conflict { .. }), true) => Ok(EventOutcome::Duplicate),
            (Ok(()), false) => Ok(EventOutcome::Applied { invoice: inv.id, status: inv.status }),
            (Err(e), _) => Err(e),
        });
    }
    for (i, scope) in disputes {
        results[i] = Some(apply_dispute(p, &scope, &events[i]).await);
    }
    Ok(results.into_iter().map(|r| r.unwrap_or(Ok(EventOutcome::Duplicate))).collect())
}

/// Decides what one settlement event changes, given what is stored now.
#[allow(clippy::too_many_arguments)]
fn plan_event(
    p: &Ports<'_>,
    event: &GatewayEvent,
    scope: &Scope,
    mut txn: Transaction,
    mut inv: Invoice,
    sub: Option<Subscription>,
    settings: &TenantSettings,
    at: DateTime<Utc>,
) -> DomainResult<Planned> {
    let ctx = context(scope, event);
    let (txn_expected, inv_expected) = (txn.version, inv.version);
    let target = match event.kind {
        GatewayEventKind::ChargeSucceeded | GatewayEventKind::PayoutPaid | GatewayEventKind::RefundSucceeded => {
            TransactionStatus::Succeeded
        }
        GatewayEventKind::ChargeFailed | GatewayEventKind::PayoutFailed | GatewayEventKind::RefundFailed => {
            TransactionStatus::Failed
        }
        GatewayEventKind::ChargeCanceled => TransactionStatus::Canceled,
        GatewayEventKind::DisputeOpened | GatewayEventKind::DisputeWon | GatewayEventKind::DisputeLost => {
            return Ok(Planned::Dispute);
        }
    };
    if txn.status == target && txn.last_event_at.is_some_and(|t| t >= event.occurred_at) {
        return Ok(Planned::Duplicate);
    }
    if txn.gateway_reference.is_none() && !event.reference.is_empty() {
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
            p.ids,
            at,
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
        return Ok(Planned::Commit { change, stale: true, invoice: inv });
    }
    let action = match target {
        TransactionStatus::Succeeded => "transaction.succeeded",
        TransactionStatus::Canceled => "transaction.canceled",
        _ => "transaction.failed",
    };
    let mut events = Vec::new();
    let mut writes = Vec::new();
    let moved = if txn.kind == TransactionType::Refund {
        settle_refund(p, &ctx, &mut inv, &txn, target, at, &mut events)?
    } else if txn.attempt == inv.attempt_count && matches!(inv.status, InvoiceStatus::Pending) {
        // Only the invoice's current attempt moves it; an old attempt's late news is journaled.
        match target {
            TransactionStatus::Succeeded => settle_paid(p, &ctx, &mut inv, sub, at, &mut writes, &mut events)?,
            TransactionStatus::Canceled => {
                let change = journal::transition(&mut inv, InvoiceAction::Cancel, at)?;
                let event = invoice_event(&ctx, p.ids, at, &inv, "invoice.canceled", &change)?;
                events.push(event.because(Some("the gateway voided the charge")));
            }
            _ => {
                txn.retryable = settle_failed(p, &ctx, &mut inv, sub, event, settings, at, &mut writes, &mut events)?;
            }
        }
        true
    } else {
        false
    };
    if moved {
        writes.push(Write::Invoice { invoice: inv.clone(), expected: Some(inv_expected) });
    }
    events.insert(0, ctx.snapshot(p.ids, at, action, &txn).because(event.failure_code.as_deref()));
    // The transaction's versioned write is what makes this once-only: a replay of the event finds
    // it settled at that event time (a duplicate), and a concurrent one loses the version race.
    writes.push(Write::Transaction { transaction: txn, expected: Some(txn_expected) });
    Ok(Planned::Commit { change: Changeset { scope: scope.clone(), writes, events }, stale: false, invoice: inv })
}

fn settle_paid(
    p: &Ports<'_>,
    ctx: &Context,
    inv: &mut Invoice,
    sub: Option<Subscription>,
    at: DateTime<Utc>,
    writes: &mut Vec<Write>,
    events: &mut Vec<AuditEvent>,
) -> DomainResult<()> {
    let change = journal::transition(inv, InvoiceAction::Succeed, at)?;
    let paid = if inv.direction == crate::plan::Direction::Payout { "payout.paid" } else { "invoice.paid" };
    events.push(invoice_event(ctx, p.ids, at, inv, paid, &change)?);
    if inv.credit_purchase {
        // Bought credit counts once its invoice is paid, in the same commit.
        let movement = crate::credit::CreditMovement {
            id: p.ids.next(crate::ids::IdKind::CreditMovement),
            customer: inv.customer.clone(),
            currency: inv.currency,
            amount: inv.total,
            kind: crate::credit::MovementKind::Purchased,
            reason: format!("bought with invoice {}", inv.id),
            invoice: Some(inv.id.clone()),
            created: at,
            livemode: inv.livemode,
        };
        events.push(ctx.snapshot(p.ids, at, "credit.purchased", &movement));
        writes.push(Write::Credit { movement });
    }
    if let Some(mut sub) = sub.filter(|s| s.status == SubscriptionStatus::PastDue) {
        let expected = sub.version;
        sub.apply(SubscriptionAction::PaymentRecovered)?;
        events.push(subscription_event(ctx, p.ids, at, &sub, "subscription.recovered", None));
        writes.push(Write::Subscription { subscription: sub, expected: Some(expected) });
    }
    Ok(())
}

/// A refund's outcome: confirmed, the invoice is (partially) refunded; refused, its amount is
/// refundable again. Whether the invoice moved.
fn settle_refund(
    p: &Ports<'_>,
    ctx: &Context,
    inv: &mut Invoice,
    txn: &Transaction,
    target: TransactionStatus,
    at: DateTime<Utc>,
    events: &mut Vec<AuditEvent>,
) -> DomainResult<bool> {
    match target {
        TransactionStatus::Succeeded => {
            let change = journal::refund(inv, txn.amount, at)?;
            let action =
                if inv.status == InvoiceStatus::Refunded { "invoice.refunded" } else { "invoice.partially_refunded" };
            events.push(invoice_event(ctx, p.ids, at, inv, action, &change)?);
            Ok(true)
        }
        TransactionStatus::Failed | TransactionStatus::Canceled => {
            let change = journal::release_refund(inv, txn.amount, at)?;
            let event = invoice_event(ctx, p.ids, at, inv, "invoice.refund_failed", &change)?;
            events.push(event.because(txn.failure_reason.as_deref()));
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// A failed attempt: the policy schedules the next one (`true`), or a debit is given up.
#[allow(clippy::too_many_arguments)]
fn settle_failed(
    p: &Ports<'_>,
    ctx: &Context,
    inv: &mut Invoice,
    sub: Option<Subscription>,
    event: &GatewayEvent,
    settings: &TenantSettings,
    at: DateTime<Utc>,
    writes: &mut Vec<Write>,
    events: &mut Vec<AuditEvent>,
) -> DomainResult<bool> {
    let reason = event.failure_code.clone().unwrap_or_else(|| "failed".into());
    if super::charge::fail_invoice(p, ctx, inv, &reason, at, settings, events)? {
        return Ok(true);
    }
    if inv.status == InvoiceStatus::Failed
        && let Some(sub) = sub
        && let Some((write, event)) = uncollectible_consequence(&settings.dunning, ctx, p.ids, sub, at)?
    {
        events.push(event);
        writes.push(write);
    }
    Ok(false)
}

/// Disputes move a paid invoice to protest, then to chargeback (with a `chargeback` transaction
/// for the money taken back) or back to paid. The invoice is read afresh, so a settlement
/// committed earlier in the same batch is seen.
async fn apply_dispute(p: &Ports<'_>, scope: &Scope, event: &GatewayEvent) -> DomainResult<EventOutcome> {
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
    if p.transactions.event_applied(&event.gateway, &event.id).await? {
        return Ok(EventOutcome::Duplicate);
    }
    let (_, txn_id) = locate(event, p.transactions.by_reference(&event.gateway, &event.reference).await?)?;
    let txn =
        p.transactions.get(scope, &txn_id).await?.ok_or_else(|| DomainError::unexpected("transaction vanished"))?;
    let mut inv =
        p.invoices.get(scope, &txn.invoice).await?.ok_or_else(|| DomainError::unexpected("invoice vanished"))?;
    let now = super::now_for(p.clocks, p.clock, scope, inv.test_clock.as_ref()).await?;
    let expected = inv.version;
    // A chargeback can come without a dispute announced first (Adyen's CHARGEBACK, a network that
    // skips the inquiry): the invoice passes through `in_protest` on its way, both steps journaled.
    let steps = if action == InvoiceAction::DisputeLost && inv.status == InvoiceStatus::Paid {
        vec![(InvoiceAction::Contest, "invoice.disputed"), (action, name)]
    } else {
        vec![(action, name)]
    };
    let ctx = context(scope, event);
    let mut events = Vec::new();
    for (step, step_name) in steps {
        let change = match journal::transition(&mut inv, step, now) {
            Ok(change) => change,
            Err(DomainError::IllegalTransition { .. }) => return Ok(EventOutcome::Stale),
            Err(e) => return Err(e),
        };
        events.push(invoice_event(&ctx, p.ids, now, &inv, step_name, &change)?.because(event.failure_code.as_deref()));
    }
    let mut writes = vec![
        Write::Invoice { invoice: inv.clone(), expected: Some(expected) },
        Write::GatewayEventApplied { gateway: event.gateway.clone(), event_id: event.id.clone() },
    ];
    if action == InvoiceAction::DisputeLost {
        let amount = inv.amount_paid - inv.amount_refunded;
        let id = p.ids.next(IdKind::Transaction);
        let mut chargeback = Transaction::for_invoice(id, &inv, TransactionType::Chargeback, 1, amount, now);
        chargeback.gateway = txn.gateway.clone();
        chargeback.gateway_reference = Some(event.reference.clone());
        chargeback.settle(TransactionStatus::Succeeded, event.occurred_at, Some("dispute lost"))?;
        events.push(ctx.snapshot(p.ids, now, "transaction.created", &chargeback).because(Some("dispute lost")));
        writes.push(Write::Transaction { transaction: chargeback, expected: None });
    }
    // A conflict (the invoice moved, or the same event applied meanwhile) fails this event so the
    // queue brings it back, when the duplicate check above tells the two apart.
    p.unit.commit(scope, writes, events).await?;
    Ok(EventOutcome::Applied { invoice: inv.id, status: inv.status })
}
