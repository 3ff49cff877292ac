//! Invoices: one-off drafts with items, finalize and charge, get, list. A finalized invoice's
//! charge is asked for by its `invoice.finalized` announcement (from the outbox), never by a send
//! after the commit.

use super::create_once;
use crate::audit::Context;
use crate::error::{DomainError, DomainResult};
use crate::ids::{Id, IdKind};
use crate::invoice::{Invoice, InvoiceAction, InvoiceItem, InvoiceStatus};
use crate::journal::{self, InvoiceChange};
use crate::money::Currency;
use crate::page::{Page, PageRequest};
use crate::plan::Direction;
use crate::ports::{InvoiceFilter, Ports, Write};

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

fn change_event(
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
) -> DomainResult<Invoice> {
    let customer = super::customer(p, ctx, customer, "customer").await?;
    let items = items(new_items)?;
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

/// Finalizes a draft (`draft` → `pending`; a zero total is paid at once). Its charge follows from
/// the `invoice.finalized` announcement.
pub async fn charge_invoice(p: &Ports<'_>, ctx: &Context, raw: &str) -> DomainResult<Invoice> {
    let mut inv = get_invoice(p, ctx, raw).await?;
    let now = crate::billing::now_for(p.clocks, p.clock, &ctx.scope, inv.test_clock.as_ref()).await?;
    let expected = inv.version;
    let change = journal::transition(&mut inv, InvoiceAction::Finalize, now)?;
    let action = if inv.status == InvoiceStatus::Paid { "invoice.paid" } else { "invoice.finalized" };
    let event = change_event(p, ctx, now, action, &inv, &change)?;
    p.unit
        .commit(&ctx.scope, vec![Write::Invoice { invoice: inv.clone(), expected: Some(expected) }], vec![event])
        .await?;
    Ok(inv)
}
