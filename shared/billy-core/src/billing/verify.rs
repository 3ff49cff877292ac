//! The verification job: recomputes a month's invoices from the audit journal (and their metered
//! lines from the usage events) and its settlements from the replayed invoices, compares them with
//! the stored state and records every mismatch. The month's invoices are read in pages over
//! several creation-time slices at once, each invoice's journal read concurrently.

use super::system;
use crate::audit::Context;
use crate::error::{DomainError, DomainResult};
use crate::ids::{Id, IdKind};
use crate::invoice::Invoice;
use crate::page::PageRequest;
use crate::ports::{Ports, UsageKey, Write};
use crate::settlement::{Month, SettledInvoice, line, settlement_month};
use crate::tenant::Scope;
use crate::verification::{Difference, Verification, VerificationStatus, check_invoice, check_settlement, check_usage};
use chrono::{DateTime, Duration, Utc};
use futures::stream::{self, StreamExt, TryStreamExt};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};

/// Creation-time slices of the month read at once.
const SLICES: i32 = 8;
/// Invoices whose journal is read at once within a slice.
const CONCURRENCY: usize = 16;
const PAGE: usize = 100;

/// Asks for a verification of `month`; the run is made by the `verify-month` function on its
/// announcement (`verification.created`).
pub async fn request_verification(
    p: &Ports<'_>,
    ctx: &Context,
    month: Month,
    trigger: &str,
) -> DomainResult<Verification> {
    let now = p.clock.now();
    let v = Verification::new(ctx.new_id(p.ids, IdKind::Verification), month, trigger, now, ctx.scope.livemode());
    let event = ctx.snapshot(p.ids, now, "verification.created", &v);
    let id = v.id.clone();
    let writes = vec![Write::Verification { verification: v.clone(), expected: None }];
    crate::service::create_once(p, ctx, v, writes, vec![event], || p.verifications.get(&ctx.scope, &id)).await
}

/// What one part of the run found.
#[derive(Default)]
struct Found {
    invoices: u64,
    usage_totals: u64,
    differences: Vec<Difference>,
    replayed: HashMap<Id, SettledInvoice>,
}

impl Found {
    fn merge(mut self, other: Self) -> Self {
        self.invoices += other.invoices;
        self.usage_totals += other.usage_totals;
        self.differences.extend(other.differences);
        self.replayed.extend(other.replayed);
        self
    }
}

/// The usage events of one invoice's metered lines, totalled per metric.
async fn counted_usage(p: &Ports<'_>, scope: &Scope, inv: &Invoice) -> DomainResult<BTreeMap<String, Decimal>> {
    let mut out = BTreeMap::new();
    let (Some(sub), Some(period)) = (&inv.subscription, &inv.period) else { return Ok(out) };
    // (A graduated price has a line per tier of one metric: each metric is counted once.)
    let mut metrics: Vec<&String> = inv.items.iter().filter_map(|i| i.metric.as_ref()).collect();
    metrics.sort();
    metrics.dedup();
    for metric in metrics {
        let key =
            UsageKey { scope: scope.clone(), subscription: sub.clone(), metric: metric.clone(), period: period.index };
        let mut after = None;
        let total: &mut Decimal = out.entry(metric.clone()).or_default();
        loop {
            let (events, next) = p.usage.events(&key, 1000, after).await?;
            for e in events {
                *total += e.quantity;
            }
            after = next;
            if after.is_none() {
                break;
            }
        }
    }
    Ok(out)
}

async fn check_one(p: &Ports<'_>, scope: &Scope, inv: Invoice) -> DomainResult<Found> {
    let events = p.audit.for_entity(scope, &inv.id).await?;
    let (mut differences, replayed) = check_invoice(&inv, &events)?;
    let mut found = Found { invoices: 1, ..Found::default() };
    if inv.items.iter().any(|i| i.metric.is_some()) {
        differences.extend(check_usage(&inv, &counted_usage(p, scope, &inv).await?));
        found.usage_totals = 1;
    }
    if let Some(replayed) = replayed {
        found.replayed.insert(inv.id.clone(), line(&replayed)?);
    }
    found.differences = differences;
    Ok(found)
}

/// Every invoice created in `[from, to)` that belongs to `month`, checked.
async fn check_slice(
    p: &Ports<'_>,
    scope: &Scope,
    month: Month,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> DomainResult<Found> {
    let mut found = Found::default();
    let mut page = PageRequest { limit: PAGE, starting_after: None };
    loop {
        let invoices = p.invoices.created_between(scope, from, to, &page).await?;
        let next = invoices.next_cursor.clone();
        let mine: Vec<Invoice> = invoices.data.into_iter().filter(|i| settlement_month(i) == month).collect();
        let checked: Vec<Found> =
            stream::iter(mine).map(|inv| check_one(p, scope, inv)).buffer_unordered(CONCURRENCY).try_collect().await?;
        found = checked.into_iter().fold(found, Found::merge);
        match next {
            Some(cursor) => page.starting_after = Some(Id::from_trusted(cursor)),
            None => return Ok(found),
        }
    }
}

/// Runs verification `id` (once: a finished one is returned as it is).
pub async fn run_verification(p: &Ports<'_>, scope: &Scope, id: &Id) -> DomainResult<Verification> {
    let ctx = system(scope, "verify-month");
    let mut v = p.verifications.get(scope, id).await?.ok_or_else(|| {
        DomainError::conflict("verification_not_visible", format!("verification {id} is not visible yet"))
    })?;
    if v.status != VerificationStatus::Running {
        return Ok(v);
    }
    let expected = v.version;
    // Ids are made on the real clock, so their time is when an invoice was really created. In live
    // mode a month's invoices were created from a month before it (a draft finalized later) to
    // the start of the next (a period ending on its last day, billed just after); in test mode
    // a test clock's month may have been made any time, so the last two years are read.
    let (from, to) = if scope.livemode() {
        (v.month.start() - Duration::days(62), v.month.next().start() + Duration::days(2))
    } else {
        let now = p.clock.now();
        (now - Duration::days(730), now + Duration::days(1))
    };
    let slice = (to - from) / SLICES;
    let bounds: Vec<(DateTime<Utc>, DateTime<Utc>)> =
        (0..SLICES).map(|i| (from + slice * i, if i == SLICES - 1 { to } else { from + slice * (i + 1) })).collect();
    let month = v.month;
    let parts: Vec<Found> = stream::iter(bounds)
        .map(|(a, b)| check_slice(p, scope, month, a, b))
        .buffer_unordered(usize::try_from(SLICES).unwrap_or(1))
        .try_collect()
        .await?;
    let mut found = parts.into_iter().fold(Found::default(), Found::merge);
    // The month's settlements, against the invoices as their journals have them.
    let mut settlements = Vec::new();
    let mut page = PageRequest { limit: PAGE, starting_after: None };
    loop {
        let listed = p.settlements.list(scope, None, &page).await?;
        settlements.extend(listed.data.into_iter().filter(|s| s.month == month));
        match listed.next_cursor {
            Some(cursor) => page.starting_after = Some(Id::from_trusted(cursor)),
            None => break,
        }
    }
    for st in &settlements {
        // An invoice netted here from another month (it arrived after its own closed).
        let missing: Vec<Id> = st
            .invoices
            .iter()
            .filter(|l| !found.replayed.contains_key(&l.invoice))
            .map(|l| l.invoice.clone())
            .collect();
        for invoice in missing {
            let events = p.audit.for_entity(scope, &invoice).await?;
            if let Some(inv) = crate::journal::fold_invoice(&events)? {
                found.replayed.insert(invoice, line(&inv)?);
            }
        }
        found.differences.extend(check_settlement(st, &found.replayed)?);
    }
    v.invoices_checked = found.invoices;
    v.usage_totals_checked = found.usage_totals;
    v.settlements_checked = settlements.len() as u64;
    v.record(found.differences);
    let now = p.clock.now();
    v.finish(now);
    let action = if v.status == VerificationStatus::Failed { "verification.failed" } else { "verification.succeeded" };
    let event = ctx.snapshot(p.ids, now, action, &v);
    let write = Write::Verification { verification: v.clone(), expected: Some(expected) };
    match p.unit.commit(scope, vec![write], vec![event]).await {
        Ok(()) => Ok(v),
        // Another run of the same request finished first: theirs stands.
        Err(DomainError::Conflict { .. }) => {
            p.verifications.get(scope, id).await?.ok_or_else(|| DomainError::unexpected("verification vanished"))
        }
        Err(e) => Err(e),
    }
}
