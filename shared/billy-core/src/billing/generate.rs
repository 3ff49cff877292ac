//! Invoice generation: exactly one invoice per subscription period, created finalized. Its charge
//! is asked for by its own announcement (`invoice.finalized`, from the outbox), so nothing that
//! committed here can be left without one. A batch of periods is read and committed together.

use super::{BatchTime, BillPeriod, invoice_event, per_item, system};
use crate::credit::{CreditMovement, MovementKind, use_credit};
use crate::error::{DomainError, DomainResult};
use crate::ids::{Id, IdKind};
use crate::invoice::{Adjustment, AdjustmentKind, Invoice, InvoiceAction, InvoiceItem, InvoiceStatus};
use crate::journal::{self, InvoiceChange};
use crate::money::Currency;
use crate::plan::{Commission, Plan, PlanKind};
use crate::ports::UsageKey;
use crate::ports::{Changeset, Ports, Write};
use crate::schedule::Period;
use crate::settings::TenantSettings;
use crate::settlement::SettlementMode;
use crate::subscription::Subscription;
use crate::tenant::Scope;
use crate::usage::UsageTotal;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use std::collections::HashMap;

/// Items for one period of a plan: the fixed price, or for a metered plan its base amount and one
/// line per metered component (per tier reached, for graduated prices) from the period's totals.
pub fn period_items(plan: &Plan, period: &Period, totals: &[UsageTotal]) -> DomainResult<Vec<InvoiceItem>> {
    let span = format!("{} – {}", period.start.format("%Y-%m-%d"), period.end.format("%Y-%m-%d"));
    match &plan.kind {
        PlanKind::FixedDebit { amount } | PlanKind::FixedPayout { amount } => {
            Ok(vec![InvoiceItem::new(&format!("{} ({span})", plan.name), 1, *amount)?])
        }
        PlanKind::MeteredDebit { base_amount, meters } | PlanKind::MeteredPayout { base_amount, meters, .. } => {
            let mut items = Vec::new();
            if *base_amount > 0 {
                items.push(InvoiceItem::new(&format!("{} base ({span})", plan.name), 1, *base_amount)?);
            }
            for meter in meters {
                let quantity = totals
                    .iter()
                    .find(|t| t.metric == meter.metric && t.period.index == period.index)
                    .map_or(Decimal::ZERO, |t| t.quantity);
                for line in meter.pricing.price(&meter.metric, quantity)? {
                    items.push(InvoiceItem::metered(&line, &meter.metric)?);
                }
            }
            Ok(items)
        }
    }
}

/// A metered payout's commission (the plan's own, else the tenant's), as its own negative line.
fn commission(plan: &Plan, tenant: Option<&Commission>, gross: i64) -> DomainResult<Option<Adjustment>> {
    let PlanKind::MeteredPayout { commission, .. } = &plan.kind else { return Ok(None) };
    let Some(commission) = commission.as_ref().or(tenant) else { return Ok(None) };
    let cut = commission.on(gross)?;
    Ok((cut > 0).then(|| Adjustment {
        kind: AdjustmentKind::Commission,
        amount: -cut,
        reason: format!("commission ({}% + {})", commission.percent.normalize(), commission.fixed_amount),
    }))
}

/// The period's invoice, created and finalized at `at`, with the change that stores it.
/// Credit left per (customer, currency) in this batch: what was read, less what earlier invoices of
/// the batch used.
type Credit = HashMap<(Id, Currency), i64>;

fn period_invoice(
    p: &Ports<'_>,
    msg: &BillPeriod,
    sub: &Subscription,
    totals: &[UsageTotal],
    credit: &mut Credit,
    settings: &TenantSettings,
    at: DateTime<Utc>,
) -> DomainResult<(Invoice, Changeset)> {
    let ctx = system(&msg.scope, "generate-invoice");
    let mut inv = Invoice::draft(
        p.ids.next(IdKind::Invoice),
        msg.customer.clone(),
        Some(msg.subscription.clone()),
        msg.plan.kind.direction(),
        msg.plan.currency,
        Some(msg.period),
        at,
        sub.livemode,
    )
    .with_items(period_items(&msg.plan, &msg.period, totals)?.into_iter().chain(msg.items.iter().cloned()).collect())?;
    if let Some(cut) = commission(&msg.plan, settings.commission.as_ref(), inv.total)? {
        inv.add_adjustment(cut)?;
    }
    // Discounts first, then the customer's credit on what is left.
    if let Some(coupon) = &msg.discount {
        coupon.discount(&mut inv)?;
    }
    let key = (inv.customer.clone(), inv.currency);
    let used = use_credit(&mut inv, credit.get(&key).copied().unwrap_or(0))?;
    // (all part of its creation: still the first version)
    inv.version = 1;
    inv.test_clock = msg.test_clock.clone();
    let created = InvoiceChange::Created { invoice: Box::new(inv.clone()) };
    let mut events = vec![invoice_event(&ctx, p.ids, at, &inv, "invoice.created", &created)?];
    // On monthly netting, it joins its month's settlement instead of being collected on its own.
    let (change, action) = if settings.settlement == SettlementMode::MonthlyNet && inv.total > 0 {
        (journal::transition(&mut inv, InvoiceAction::Defer, at)?, "invoice.in_settlement")
    } else {
        let change = journal::transition(&mut inv, InvoiceAction::Finalize, at)?;
        (change, if inv.status == InvoiceStatus::Pending { "invoice.finalized" } else { "invoice.paid" })
    };
    events.push(invoice_event(&ctx, p.ids, at, &inv, action, &change)?);
    let mut writes = vec![Write::Invoice { invoice: inv.clone(), expected: None }];
    if let Some(used) = used {
        let movement = CreditMovement {
            id: p.ids.next(IdKind::CreditMovement),
            customer: inv.customer.clone(),
            currency: inv.currency,
            amount: -used,
            kind: MovementKind::Applied,
            reason: format!("used by invoice {}", inv.id),
            invoice: Some(inv.id.clone()),
            created: at,
            livemode: inv.livemode,
        };
        events.push(ctx.snapshot(p.ids, at, "credit.applied", &movement));
        writes.push(Write::Credit { movement });
        *credit.entry(key).or_insert(0) -= used;
    }
    // The priced totals close with the invoice, on the condition that they are what was priced:
    // an event counted meanwhile makes this a conflict, and the period is priced again.
    for meter in msg.plan.kind.meters() {
        let seen = totals.iter().find(|t| t.metric == meter.metric && t.period.index == msg.period.index);
        writes.push(Write::UsageClose {
            subscription: msg.subscription.clone(),
            metric: meter.metric.clone(),
            period: msg.period,
            priced: seen.map(|t| (t.quantity, t.events)),
        });
    }
    Ok((inv, Changeset { scope: msg.scope.clone(), writes, events }))
}

/// Creates each period's invoice (exactly once) and finalizes it. One read of the subscriptions
/// and test clocks and as few transactions as the store allows for the whole batch. Results come
/// back in the order of `msgs`; `Ok(None)` means the period gets no invoice (its subscription is
/// gone or was canceled before it began).
pub async fn generate_invoices(p: &Ports<'_>, msgs: &[BillPeriod]) -> Vec<DomainResult<Option<Invoice>>> {
    per_item(msgs.len(), generate_batch(p, msgs).await)
}

async fn generate_batch(p: &Ports<'_>, msgs: &[BillPeriod]) -> DomainResult<Vec<DomainResult<Option<Invoice>>>> {
    let time = BatchTime::read(p.clocks, p.clock, msgs.iter().map(|m| (&m.scope, m.test_clock.as_ref()))).await?;
    let keys: Vec<(Scope, Id)> = msgs.iter().map(|m| (m.scope.clone(), m.subscription.clone())).collect();
    let subs: HashMap<Id, Subscription> =
        p.subscriptions.get_many(&keys).await?.into_iter().map(|s| (s.id.clone(), s)).collect();
    let wanted: Vec<UsageKey> = msgs
        .iter()
        .flat_map(|m| {
            m.plan.kind.meters().iter().map(|meter| UsageKey {
                scope: m.scope.clone(),
                subscription: m.subscription.clone(),
                metric: meter.metric.clone(),
                period: m.period.index,
            })
        })
        .collect();
    let totals: Vec<UsageTotal> =
        if wanted.is_empty() { Vec::new() } else { p.usage.totals(&wanted).await?.into_iter().flatten().collect() };
    let mut owners: Vec<(Scope, Id, Currency)> = msgs
        .iter()
        .filter(|m| m.plan.kind.direction() == crate::plan::Direction::Debit)
        .map(|m| (m.scope.clone(), m.customer.clone(), m.plan.currency))
        .collect();
    owners.sort_by(|a, b| (a.1.as_str(), a.2.to_string()).cmp(&(b.1.as_str(), b.2.to_string())));
    owners.dedup();
    let mut credit: Credit = if owners.is_empty() {
        HashMap::new()
    } else {
        owners.iter().map(|(_, c, cur)| (c.clone(), *cur)).zip(p.credits.balances(&owners).await?).collect()
    };
    let settings = super::settings_for(p, msgs.iter().map(|m| &m.scope)).await?;
    let mut results: Vec<DomainResult<Option<Invoice>>> = msgs.iter().map(|_| Ok(None)).collect();
    let (mut changes, mut made) = (Vec::new(), Vec::new());
    for (i, msg) in msgs.iter().enumerate() {
        let Some(sub) = subs.get(&msg.subscription) else { continue };
        // A subscription canceled before this period began gets no invoice for it, even from a
        // message sent earlier.
        if sub.cancel_at.is_some_and(|c| msg.period.start >= c) {
            continue;
        }
        let made_at = time.step_time(msg.test_clock.as_ref(), Some(msg.due_at()));
        let own: Vec<UsageTotal> = totals.iter().filter(|t| t.subscription == msg.subscription).cloned().collect();
        let tenant = settings.get(&msg.scope).cloned().unwrap_or_default();
        match made_at.and_then(|at| period_invoice(p, msg, sub, &own, &mut credit, &tenant, at)) {
            Ok((inv, change)) => {
                changes.push(change);
                made.push((i, inv));
            }
            Err(e) => results[i] = Err(e),
        }
    }
    for ((i, inv), committed) in made.into_iter().zip(p.unit.commit_each(changes).await) {
        results[i] = match committed {
            Ok(()) => Ok(Some(inv)),
            // A concurrent or redelivered step made it first: use theirs.
            Err(DomainError::Conflict { .. }) => {
                let msg = &msgs[i];
                p.invoices
                    .for_period(&msg.scope, &msg.subscription, msg.period.start)
                    .await
                    .and_then(|found| {
                        found.ok_or_else(|| {
                            DomainError::conflict("transaction_conflict", "invoice creation conflicted; retry")
                        })
                    })
                    .map(Some)
            }
            Err(e) => Err(e),
        };
    }
    Ok(results)
}
