//! Invoices: one-off drafts with items, finalize and charge, get, list; and money back: cancel
//! (voiding an open attempt), refund and contest, each taking effect when the gateway confirms
//! it. A finalized invoice's charge is asked for by its `invoice.finalized` announcement (from the
//! outbox), never by a send after the commit.

use super::create_once;
use crate::audit::Context;
use crate::error::{DomainError, DomainResult};
use crate::gateway::{GatewayResponse, MoneyMovement};
use crate::ids::{Id, IdKind};
use crate::invoice::{Invoice, InvoiceAction, InvoiceItem, InvoiceStatus};
use crate::journal::{self, InvoiceChange};
use crate::money::Currency;
use crate::page::{Page, PageRequest};
use crate::plan::Direction;
use crate::ports::{InvoiceFilter, Ports, Write};
use crate::transaction::{Transaction, TransactionStatus, TransactionType};

/// An item as a client gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewItem {
    pub description: String,
    pub quantity: i64,
    pub unit_amount: i64,
}

fn items(input: Vec<NewItem>) -> DomainResult<Vec<InvoiceItem>> {
    if input.is_empty() {
        return Err(DomainError::invalid("parameter_missing", "give at least one item", Some("items")));
    }
    input.into_iter().map(|i| InvoiceItem::new(&i.description, i.quantity, i.unit_amount)).collect()
}

pub(crate) fn change_event(
    p: &Ports<'_>,
    ctx: &Context,
    at: chrono::DateTime<chrono::Utc>,
    action: &'static str,
    inv: &Invoice,
    change: &InvoiceChange,
) -> DomainResult<crate::audit::AuditEvent> {
    let mut event = ctx.snapshot(p.ids, at, action, inv);
    event.change = Some(serde_json::to_value(change).map_err(DomainError::unexpected)?);
    Ok(event)
}

pub async fn get_invoice(p: &Ports<'_>, ctx: &Context, raw: &str) -> DomainResult<Invoice> {
    let id = Id::parse(IdKind::Invoice, raw, "")?;
    p.invoices.get(&ctx.scope, &id).await?.ok_or_else(|| DomainError::not_found("invoice", raw))
}

pub async fn list_invoices(
    p: &Ports<'_>,
    ctx: &Context,
    filter: &InvoiceFilter,
    page: &PageRequest,
) -> DomainResult<Page<Invoice>> {
    p.invoices.list(&ctx.scope, filter, page).await
}

/// Creates a one-off invoice in `draft` with its items.
pub async fn create_invoice(
    p: &Ports<'_>,
    ctx: &Context,
    customer: &str,
    currency: Currency,
    new_items: Vec<NewItem>,
    coupon: Option<&str>,
) -> DomainResult<Invoice> {
    let customer = super::customer(p, ctx, customer, "customer").await?;
    let items = items(new_items)?;
    let coupon = match coupon {
        Some(raw) => {
            let coupon = super::coupons::get_coupon(p, ctx, raw, "coupon").await?;
            coupon.check_currency(currency)?;
            Some(coupon)
        }
        None => None,
    };
    let now = super::now_for(p, ctx, &customer).await?;
    let mut inv = Invoice::draft(
        ctx.new_id(p.ids, IdKind::Invoice),
        customer.id.clone(),
        None,
        Direction::Debit,
        currency,
        None,
        now,
        ctx.scope.livemode(),
    )
    .with_items(items)?;
    inv.test_clock = customer.test_clock.clone();
    inv.coupon = coupon;
    let created = InvoiceChange::Created { invoice: Box::new(inv.clone()) };
    let events = vec![change_event(p, ctx, now, "invoice.created", &inv, &created)?];
    let writes = vec![Write::Invoice { invoice: inv.clone(), expected: None }];
    let id = inv.id.clone();
    create_once(p, ctx, inv, writes, events, || p.invoices.get(&ctx.scope, &id)).await
}

/// Adds items to a draft invoice.
pub async fn add_invoice_items(
    p: &Ports<'_>,
    ctx: &Context,
    raw: &str,
    new_items: Vec<NewItem>,
) -> DomainResult<Invoice> {
    let mut inv = get_invoice(p, ctx, raw).await?;
    let items = items(new_items)?;
    let expected = inv.version;
    inv.add_items(items.clone())?;
    let now = crate::billing::now_for(p.clocks, p.clock, &ctx.scope, inv.test_clock.as_ref()).await?;
    let event = change_event(p, ctx, now, "invoice.items_added", &inv, &InvoiceChange::ItemsAdded { items })?;
    p.unit
        .commit(&ctx.scope, vec![Write::Invoice { invoice: inv.clone(), expected: Some(expected) }], vec![event])
        .await?;
    Ok(inv)
}

/// Finalizes a draft (`draft` → `pending`; a zero total is paid at once): its coupon comes off
/// first, then the customer's credit covers what it can. Its charge follows from the
/// `invoice.finalized` announcement.
pub async fn charge_invoice(p: &Ports<'_>, ctx: &Context, raw: &str) -> DomainResult<Invoice> {
    let mut inv = get_invoice(p, ctx, raw).await?;
    let now = crate::billing::now_for(p.clocks, p.clock, &ctx.scope, inv.test_clock.as_ref()).await?;
    let expected = inv.version;
    if inv.status == InvoiceStatus::PayoutFailed {
        // A payout still owed: one more attempt now, to the customer's current default destination.
        let change = journal::transition(&mut inv, InvoiceAction::Reschedule, now)?;
        let event = change_event(p, ctx, now, "payout.retry_scheduled", &inv, &change)?;
        p.unit
            .commit(&ctx.scope, vec![Write::Invoice { invoice: inv.clone(), expected: Some(expected) }], vec![event])
            .await?;
        return Ok(inv);
    }
    let mut events = Vec::new();
    let mut writes = Vec::new();
    if inv.status == InvoiceStatus::Draft {
        if let Some(coupon) = inv.coupon.clone()
            && coupon.discount(&mut inv)?.is_some()
        {
            let adjustment = inv.adjustments.last().cloned().ok_or_else(|| DomainError::unexpected("no discount"))?;
            events.push(change_event(
                p,
                ctx,
                now,
                "invoice.adjustment_added",
                &inv,
                &InvoiceChange::AdjustmentAdded { adjustment },
            )?);
        }
        if !inv.credit_purchase {
            let available = p.credits.balances(&[(ctx.scope.clone(), inv.customer.clone(), inv.currency)]).await?;
            if let Some(used) = crate::credit::use_credit(&mut inv, available.first().copied().unwrap_or(0))? {
                let adjustment = inv.adjustments.last().cloned().ok_or_else(|| DomainError::unexpected("no credit"))?;
                events.push(change_event(
                    p,
                    ctx,
                    now,
                    "invoice.adjustment_added",
                    &inv,
                    &InvoiceChange::AdjustmentAdded { adjustment },
                )?);
                let movement = crate::credit::CreditMovement {
                    id: ctx.new_id(p.ids, IdKind::CreditMovement),
                    customer: inv.customer.clone(),
                    currency: inv.currency,
                    amount: -used,
                    kind: crate::credit::MovementKind::Applied,
                    reason: format!("used by invoice {}", inv.id),
                    invoice: Some(inv.id.clone()),
                    created: now,
                    livemode: inv.livemode,
                };
                events.push(ctx.snapshot(p.ids, now, "credit.applied", &movement));
                writes.push(Write::Credit { movement });
            }
        }
    }
    let change = journal::transition(&mut inv, InvoiceAction::Finalize, now)?;
    let action = if inv.status == InvoiceStatus::Paid { "invoice.paid" } else { "invoice.finalized" };
    events.push(change_event(p, ctx, now, action, &inv, &change)?);
    writes.insert(0, Write::Invoice { invoice: inv.clone(), expected: Some(expected) });
    p.unit.commit(&ctx.scope, writes, events).await?;
    Ok(inv)
}

// --- money back --------------------------------------------------------------------------------

fn gateway_unavailable(gateway: &str, e: &crate::gateway::GatewayError) -> DomainError {
    DomainError::Unavailable(format!("gateway {gateway} did not answer ({e}); retry later"))
}

/// A note on the invoice's trail that changes nothing (a request the gateway will answer).
fn invoice_note(
    p: &Ports<'_>,
    ctx: &Context,
    at: chrono::DateTime<chrono::Utc>,
    action: &'static str,
    inv: &Invoice,
    reason: Option<&str>,
) -> crate::audit::AuditEvent {
    ctx.snapshot(p.ids, at, action, inv).because(reason).as_note()
}

/// Cancels an invoice (SPEC §4): a draft, or one waiting for a retry, at once; a pending one by
/// voiding its open gateway attempt, which takes effect when the gateway confirms it (an attempt
/// not yet sent is voided here, so it never will be). A charge that already succeeded cannot be
/// voided: the refusal is recorded and the answer says so (409 `charge_already_succeeded`).
pub async fn cancel_invoice(p: &Ports<'_>, ctx: &Context, raw: &str, reason: Option<&str>) -> DomainResult<Invoice> {
    let mut inv = get_invoice(p, ctx, raw).await?;
    let now = crate::billing::now_for(p.clocks, p.clock, &ctx.scope, inv.test_clock.as_ref()).await?;
    let expected = inv.version;
    let cancel_now = |inv: &mut Invoice| -> DomainResult<crate::audit::AuditEvent> {
        let change = journal::transition(inv, InvoiceAction::Cancel, now)?;
        Ok(change_event(p, ctx, now, "invoice.canceled", inv, &change)?.because(reason))
    };
    if inv.status != InvoiceStatus::Pending {
        // Anything else this table forbids is an illegal transition (409, nothing changed).
        let event = cancel_now(&mut inv)?;
        let writes = vec![Write::Invoice { invoice: inv.clone(), expected: Some(expected) }];
        p.unit.commit(&ctx.scope, writes, vec![event]).await?;
        return Ok(inv);
    }
    match crate::billing::attempt_made(p, &ctx.scope, &inv).await? {
        None => {
            // Not sent yet: a voided transaction takes the attempt, so the charge step skips it.
            let mut voided = crate::billing::attempt_transaction(p, &inv, now);
            voided.settle(TransactionStatus::Canceled, now, Some("invoice canceled before the attempt was sent"))?;
            let mut writes = crate::billing::create_attempt(&inv, voided.clone());
            let events = vec![ctx.snapshot(p.ids, now, "transaction.canceled", &voided), cancel_now(&mut inv)?];
            writes.push(Write::Invoice { invoice: inv.clone(), expected: Some(expected) });
            p.unit.commit(&ctx.scope, writes, events).await.map_err(|e| match e {
                DomainError::Conflict { .. } => {
                    DomainError::conflict("charge_in_flight", "the charge is being sent right now; retry in a moment")
                }
                other => other,
            })?;
            Ok(inv)
        }
        Some(txn) if txn.status == TransactionStatus::Unknown => Err(DomainError::conflict(
            "charge_outcome_unknown",
            "the gateway has not answered this charge yet; cancel once its outcome is known",
        )),
        Some(txn) if txn.status == TransactionStatus::Pending => {
            let Some(reference) = txn.gateway_reference.clone() else {
                return Err(DomainError::conflict(
                    "charge_in_flight",
                    "the charge is being sent right now; retry in a moment",
                ));
            };
            let registry = p.gateways.for_scope(&ctx.scope).await?;
            let gateway = registry.get(&txn.gateway).ok_or_else(|| {
                DomainError::unexpected(format!("gateway {} of {} is not configured", txn.gateway, txn.id))
            })?;
            let answer = gateway.cancel(&reference, &format!("{}-void", txn.idempotency_key)).await;
            match answer {
                Ok(GatewayResponse::Accepted { .. }) => {
                    let note = invoice_note(p, ctx, now, "invoice.cancel_requested", &inv, reason);
                    p.unit.commit(&ctx.scope, Vec::new(), vec![note]).await?;
                    Ok(inv)
                }
                Ok(GatewayResponse::Declined { code, .. }) => {
                    let why = format!("the gateway refused to void the charge: {code}");
                    let note = invoice_note(p, ctx, now, "invoice.cancel_refused", &inv, Some(&why));
                    p.unit.commit(&ctx.scope, Vec::new(), vec![note]).await?;
                    let code =
                        if code == "charge_already_succeeded" { "charge_already_succeeded" } else { "void_refused" };
                    Err(DomainError::conflict(code, format!("{why}; the invoice will be paid, refund it instead")))
                }
                Err(e) => Err(gateway_unavailable(&txn.gateway, &e)),
            }
        }
        // Settled at the gateway; its webhook is on its way to the invoice.
        Some(_) => {
            Err(DomainError::conflict("charge_settling", "the charge already has an outcome; retry in a moment"))
        }
    }
}

/// Asks the gateway to refund part or all of a paid invoice (SPEC §4), within the tenant's refund
/// window; the invoice becomes `partially_refunded` or `refunded` when the gateway confirms. The
/// amount is held on the invoice meanwhile, so concurrent refunds can never add up to more than
/// was paid (the loser of a race gets a 409 and nothing). Returns the invoice and the refund's
/// transaction.
pub async fn refund_invoice(
    p: &Ports<'_>,
    ctx: &Context,
    raw: &str,
    amount: Option<i64>,
    reason: Option<&str>,
) -> DomainResult<(Invoice, Transaction)> {
    let mut inv = get_invoice(p, ctx, raw).await?;
    let now = crate::billing::now_for(p.clocks, p.clock, &ctx.scope, inv.test_clock.as_ref()).await?;
    let settings = p.settings.get(&ctx.scope).await?;
    let charge =
        crate::billing::attempt_made(p, &ctx.scope, &inv).await?.filter(|t| t.status == TransactionStatus::Succeeded);
    let expected = inv.version;
    let (amount, change) = journal::request_refund(&mut inv, amount, settings.refund, now)?;
    let charge = charge.ok_or_else(|| DomainError::conflict("charge_missing", "no succeeded charge to refund"))?;
    let reference = charge
        .gateway_reference
        .clone()
        .ok_or_else(|| DomainError::conflict("charge_missing", "the charge has no gateway reference"))?;
    let id = p.ids.next(IdKind::Transaction);
    let mut refund = Transaction::for_invoice(id, &inv, TransactionType::Refund, inv.refunds_requested, amount, now);
    refund.gateway = charge.gateway.clone();
    let events = vec![
        change_event(p, ctx, now, "invoice.refund_requested", &inv, &change)?.because(reason),
        ctx.snapshot(p.ids, now, "transaction.created", &refund).because(reason),
    ];
    let writes = vec![
        Write::Invoice { invoice: inv.clone(), expected: Some(expected) },
        Write::Transaction { transaction: refund.clone(), expected: None },
    ];
    p.unit.commit(&ctx.scope, writes, events).await.map_err(|e| match e {
        DomainError::Conflict { .. } => DomainError::conflict(
            "invoice_changed",
            "the invoice changed meanwhile (another refund?); read it and retry",
        ),
        other => other,
    })?;
    let registry = p.gateways.for_scope(&ctx.scope).await?;
    let gateway = registry
        .get(&refund.gateway)
        .ok_or_else(|| DomainError::unexpected(format!("gateway {} is not configured", refund.gateway)))?;
    let movement = MoneyMovement {
        idempotency_key: refund.idempotency_key.clone(),
        amount: crate::money::Money::new(amount, inv.currency),
        method_type: crate::payment_method::MethodType::Card,
        token: String::new(),
        transaction: refund.id.to_string(),
        scope: ctx.scope.key(),
        description: format!("Refund of invoice {}", inv.id),
        customer: None,
    };
    let settled = match gateway.refund(&reference, &movement).await {
        Ok(GatewayResponse::Accepted { reference }) => {
            let writes = vec![Write::TransactionReference {
                transaction: refund.id.clone(),
                gateway: refund.gateway.clone(),
                reference: reference.clone(),
                lookup: !gateway.echoes_billy_ids(),
            }];
            refund.gateway_reference = Some(reference);
            let note = ctx.snapshot(p.ids, now, "transaction.requested", &refund).as_note();
            match p.unit.commit(&ctx.scope, writes, vec![note]).await {
                Ok(()) | Err(DomainError::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
            return Ok((inv, refund));
        }
        Ok(GatewayResponse::Declined { code, .. }) => code,
        Err(crate::gateway::GatewayError::NotSent(e)) => {
            tracing::warn!(transaction = %refund.id, error = %e, "refund not sent; released");
            "gateway_unreachable".to_owned()
        }
        Err(crate::gateway::GatewayError::Unknown(e)) => {
            // It may have been made: the transaction waits for the webhook or a look-up.
            let expected_txn = refund.version;
            refund.mark_unknown(&refund.gateway.clone(), &e)?;
            let event = ctx.snapshot(p.ids, now, "transaction.outcome_unknown", &refund).because(Some(&e));
            let write = Write::Transaction { transaction: refund.clone(), expected: Some(expected_txn) };
            p.unit.commit(&ctx.scope, vec![write], vec![event]).await?;
            return Ok((inv, refund));
        }
    };
    // Refused (or never sent): the refund fails and its amount is refundable again.
    let (expected_inv, expected_txn) = (inv.version, refund.version);
    refund.settle(TransactionStatus::Failed, now, Some(&settled))?;
    let change = journal::release_refund(&mut inv, amount, now)?;
    let events = vec![
        ctx.snapshot(p.ids, now, "transaction.failed", &refund).because(Some(&settled)),
        change_event(p, ctx, now, "invoice.refund_failed", &inv, &change)?.because(Some(&settled)),
    ];
    let writes = vec![
        Write::Transaction { transaction: refund.clone(), expected: Some(expected_txn) },
        Write::Invoice { invoice: inv.clone(), expected: Some(expected_inv) },
    ];
    p.unit.commit(&ctx.scope, writes, events).await?;
    if settled == "gateway_unreachable" {
        return Err(DomainError::Unavailable(format!(
            "gateway {} could not be reached; nothing was refunded",
            refund.gateway
        )));
    }
    Ok((inv, refund))
}

/// The customer claims fraud (SPEC §4). With the sandbox, which plays the card network, this
/// opens a dispute whose webhook puts the invoice in protest; real gateways let no merchant open
/// one (409 `contest_not_supported`): their disputes arrive only by webhook.
pub async fn contest_invoice(p: &Ports<'_>, ctx: &Context, raw: &str, reason: Option<&str>) -> DomainResult<Invoice> {
    let inv = get_invoice(p, ctx, raw).await?;
    if inv.status != InvoiceStatus::Paid {
        return Err(DomainError::IllegalTransition {
            entity: "invoice",
            from: inv.status.as_str().into(),
            action: InvoiceAction::Contest.as_str().into(),
        });
    }
    let charge = crate::billing::attempt_made(p, &ctx.scope, &inv)
        .await?
        .filter(|t| t.status == TransactionStatus::Succeeded)
        .ok_or_else(|| DomainError::conflict("charge_missing", "no succeeded charge to contest"))?;
    let registry = p.gateways.for_scope(&ctx.scope).await?;
    let gateway = registry.get(&charge.gateway).filter(|g| g.opens_disputes()).ok_or_else(|| {
        DomainError::conflict(
            "contest_not_supported",
            "this gateway lets no merchant open a dispute: the cardholder's bank does, and it arrives by webhook",
        )
    })?;
    let reference = charge.gateway_reference.clone().unwrap_or_default();
    let why = reason.unwrap_or("fraudulent");
    gateway.open_dispute(&reference, why).await.map_err(|e| gateway_unavailable(&charge.gateway, &e))?;
    let now = crate::billing::now_for(p.clocks, p.clock, &ctx.scope, inv.test_clock.as_ref()).await?;
    let note = invoice_note(p, ctx, now, "invoice.contest_requested", &inv, Some(why));
    p.unit.commit(&ctx.scope, Vec::new(), vec![note]).await?;
    Ok(inv)
}
