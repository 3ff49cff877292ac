//! Customer credit: grant it, sell it (a one-off invoice whose payment adds it), and read the
//! balances with every movement.

use crate::audit::Context;
use crate::credit::{CreditBalance, CreditMovement, MovementKind, validate_grant};
use crate::error::DomainResult;
use crate::ids::IdKind;
use crate::invoice::{Invoice, InvoiceAction, InvoiceItem, InvoiceStatus};
use crate::journal::{self, InvoiceChange};
use crate::money::Currency;
use crate::plan::Direction;
use crate::ports::{Ports, Write};

/// Adds credit to a customer's balance at once.
pub async fn grant_credit(
    p: &Ports<'_>,
    ctx: &Context,
    customer_raw: &str,
    amount: i64,
    currency: Currency,
    reason: &str,
) -> DomainResult<CreditMovement> {
    validate_grant(amount, reason)?;
    let customer = super::customer(p, ctx, customer_raw, "").await?;
    let now = super::now_for(p, ctx, &customer).await?;
    let movement = CreditMovement {
        id: ctx.new_id(p.ids, IdKind::CreditMovement),
        customer: customer.id.clone(),
        currency,
        amount,
        kind: MovementKind::Granted,
        reason: if reason.trim().is_empty() { "granted".to_owned() } else { reason.trim().to_owned() },
        invoice: None,
        created: now,
        livemode: ctx.scope.livemode(),
    };
    let event = ctx.snapshot(p.ids, now, "credit.granted", &movement);
    match p.unit.commit(&ctx.scope, vec![Write::Credit { movement: movement.clone() }], vec![event]).await {
        Ok(()) => Ok(movement),
        // A retried request whose first try committed: its movement exists.
        Err(crate::DomainError::Conflict { .. }) if ctx.idempotency.is_some() => Ok(movement),
        Err(e) => Err(e),
    }
}

/// Sells credit: a one-off invoice, finalized (and so charged); its payment adds the credit.
pub async fn sell_credit(
    p: &Ports<'_>,
    ctx: &Context,
    customer_raw: &str,
    amount: i64,
    currency: Currency,
) -> DomainResult<Invoice> {
    validate_grant(amount, "")?;
    let customer = super::customer(p, ctx, customer_raw, "").await?;
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
    .with_items(vec![InvoiceItem::new("Prepaid credit", 1, amount)?])?;
    inv.credit_purchase = true;
    inv.test_clock = customer.test_clock.clone();
    let created = InvoiceChange::Created { invoice: Box::new(inv.clone()) };
    let mut events = vec![super::invoices::change_event(p, ctx, now, "invoice.created", &inv, &created)?];
    let change = journal::transition(&mut inv, InvoiceAction::Finalize, now)?;
    let action = if inv.status == InvoiceStatus::Paid { "invoice.paid" } else { "invoice.finalized" };
    events.push(super::invoices::change_event(p, ctx, now, action, &inv, &change)?);
    let id = inv.id.clone();
    let writes = vec![Write::Invoice { invoice: inv.clone(), expected: None }];
    super::create_once(p, ctx, inv, writes, events, || p.invoices.get(&ctx.scope, &id)).await
}

/// A customer's balances and their latest movements (newest first).
pub async fn balance(
    p: &Ports<'_>,
    ctx: &Context,
    customer_raw: &str,
) -> DomainResult<(Vec<CreditBalance>, Vec<CreditMovement>)> {
    let customer = super::customer(p, ctx, customer_raw, "").await?;
    let balances = p.credits.of_customer(&ctx.scope, &customer.id).await?;
    let movements = p.credits.movements(&ctx.scope, &customer.id, 100).await?;
    Ok((balances, movements))
}
