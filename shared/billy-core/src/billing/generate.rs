//! Invoice generation: exactly one invoice per subscription period, created finalized, with its
//! charge requested. A batch of periods is read and committed together.

use super::{BatchTime, BillPeriod, charge_message, invoice_event, per_item, system};
use crate::error::{DomainError, DomainResult};
use crate::ids::{Id, IdGenerator, IdKind};
use crate::invoice::{Invoice, InvoiceAction, InvoiceItem, InvoiceStatus};
use crate::journal::{self, InvoiceChange};
use crate::plan::{Plan, PlanKind};
use crate::ports::{
    Changeset, Clock, InvoiceRepository, QueuePublisher, SubscriptionRepository, TestClockRepository, UnitOfWork, Write,
};
use crate::schedule::Period;
use crate::subscription::Subscription;
use crate::tenant::Scope;
use chrono::{DateTime, Utc};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy)]
pub struct GenerateDeps<'a> {
    pub subscriptions: &'a dyn SubscriptionRepository,
    pub invoices: &'a dyn InvoiceRepository,
    pub clocks: &'a dyn TestClockRepository,
    pub unit: &'a dyn UnitOfWork,
    pub queue: &'a dyn QueuePublisher,
    pub ids: &'a dyn IdGenerator,
    pub clock: &'a dyn Clock,
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

/// The period's invoice, created and finalized, with the change that stores it.
fn period_invoice(
    deps: GenerateDeps<'_>,
    msg: &BillPeriod,
    sub: &Subscription,
    now: DateTime<Utc>,
) -> DomainResult<(Invoice, Changeset)> {
    let ctx = system(&msg.scope, "generate-invoice");
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
    let writes = vec![Write::Invoice { invoice: inv.clone(), expected: None }];
    Ok((inv, Changeset { scope: msg.scope.clone(), writes, events }))
}

/// Creates each period's invoice (exactly once), finalizes it, and asks for its charge. One read
/// of the subscriptions and test clocks, as few transactions as the store allows, and one batched
/// send for the whole batch. Results come back in the order of `msgs`; `Ok(None)` means the
/// period gets no invoice (its subscription is gone or was canceled before it began).
pub async fn generate_invoices(deps: GenerateDeps<'_>, msgs: &[BillPeriod]) -> Vec<DomainResult<Option<Invoice>>> {
    per_item(msgs.len(), generate_batch(deps, msgs).await)
}

async fn generate_batch(
    deps: GenerateDeps<'_>,
    msgs: &[BillPeriod],
) -> DomainResult<Vec<DomainResult<Option<Invoice>>>> {
    let time = BatchTime::read(deps.clocks, deps.clock, msgs.iter().map(|m| (&m.scope, m.test_clock.as_ref()))).await?;
    let keys: Vec<(Scope, Id)> = msgs.iter().map(|m| (m.scope.clone(), m.subscription.clone())).collect();
    let subs: HashMap<Id, Subscription> =
        deps.subscriptions.get_many(&keys).await?.into_iter().map(|s| (s.id.clone(), s)).collect();
    let mut results: Vec<DomainResult<Option<Invoice>>> = msgs.iter().map(|_| Ok(None)).collect();
    let (mut changes, mut made) = (Vec::new(), Vec::new());
    for (i, msg) in msgs.iter().enumerate() {
        let Some(sub) = subs.get(&msg.subscription) else { continue };
        // A subscription canceled before this period began gets no invoice for it, even from a
        // message sent earlier.
        if sub.cancel_at.is_some_and(|c| msg.period.start >= c) {
            continue;
        }
        match time.now(msg.test_clock.as_ref()).and_then(|now| period_invoice(deps, msg, sub, now)) {
            Ok((inv, change)) => {
                changes.push(change);
                made.push((i, inv));
            }
            Err(e) => results[i] = Err(e),
        }
    }
    for ((i, inv), committed) in made.into_iter().zip(deps.unit.commit_each(changes).await) {
        results[i] = match committed {
            Ok(()) => Ok(Some(inv)),
            // A concurrent or redelivered step made it first: use theirs.
            Err(DomainError::Conflict { .. }) => {
                let msg = &msgs[i];
                deps.invoices
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
    // Asked again on every delivery: charging is idempotent per attempt, and this delivery may be
    // the one after a crash between the commit and the send.
    let mut asked = Vec::new();
    let mut requests = Vec::new();
    for (i, result) in results.iter().enumerate() {
        if let Ok(Some(inv)) = result
            && inv.status == InvoiceStatus::Pending
        {
            requests.push(charge_message(&msgs[i].scope, inv)?);
            asked.push(i);
        }
    }
    if let Err(e) = deps.queue.send(deps.charge_queue, &requests).await {
        for i in asked {
            results[i] = Err(e.clone());
        }
    }
    Ok(results)
}

/// Asks the charge step for the invoice's current attempt.
pub async fn request_charge(
    queue: &dyn QueuePublisher,
    charge_queue: &str,
    scope: &Scope,
    inv: &Invoice,
) -> DomainResult<()> {
    queue.send(charge_queue, &[charge_message(scope, inv)?]).await
}
