//! The settlement job's run over one tenant mode: reads the invoices waiting in settlements and
//! the months not yet settled, plans each account (customer and currency) with
//! [`crate::settlement::plan_run`] at that account's time (its test clock's, or the real one), and
//! commits the plan step by step. Every step is conditional on what it read (versions, claims),
//! so a run that races another or dies half-way leaves nothing half-made: the next run finishes
//! it, and a repeated run changes nothing.

use super::{BatchTime, invoice_event};
use crate::audit::{Actor, Context};
use crate::error::{DomainError, DomainResult};
use crate::ids::{Id, IdKind};
use crate::invoice::{Adjustment, AdjustmentKind, Invoice, InvoiceAction, InvoiceItem, InvoiceStatus};
use crate::journal::{self, InvoiceChange};
use crate::money::Currency;
use crate::plan::Direction;
use crate::ports::{Ports, Write};
use crate::settlement::{Account, RunChange, Settlement, SettlementRun, SettlementStatus, SettlementStep, plan_run};
use crate::tenant::Scope;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;

/// Invoices marked settled per transaction (each is an update and its audit event).
const MARK_CHUNK: usize = 25;

/// Runs the settlement job for `scope` and records the run (`trigger`: `schedule` or `api`).
pub async fn run_settlements(p: &Ports<'_>, scope: &Scope, trigger: &str) -> DomainResult<SettlementRun> {
    let ctx = Context::new(scope.clone(), Actor::System { function: "settle-accounts".into() }, None);
    let started = p.clock.now();
    let waiting = p.settlements.invoices_in_settlement(scope).await?;
    let mut accounts: BTreeMap<(Id, Currency), (Option<Id>, bool)> = BTreeMap::new();
    for inv in &waiting {
        accounts.entry((inv.customer.clone(), inv.currency)).or_insert((inv.test_clock.clone(), inv.livemode));
    }
    for status in [SettlementStatus::Open, SettlementStatus::Closed] {
        for st in p.settlements.in_status(scope, status).await? {
            accounts.entry((st.customer.clone(), st.currency)).or_insert((st.test_clock.clone(), st.livemode));
        }
    }
    let time = BatchTime::read(p.clocks, p.clock, accounts.values().map(|(clock, _)| (scope, clock.as_ref()))).await?;
    let (mut changes, mut errors) = (Vec::new(), Vec::new());
    let mut owned: BTreeMap<Id, Vec<Settlement>> = BTreeMap::new();
    for ((customer, currency), (clock, livemode)) in &accounts {
        let done = async {
            if !owned.contains_key(customer) {
                owned.insert(customer.clone(), p.settlements.for_customer(scope, customer).await?);
            }
            let settlements: Vec<Settlement> =
                owned[customer].iter().filter(|s| s.currency == *currency).cloned().collect();
            let invoices: Vec<Invoice> =
                waiting.iter().filter(|i| i.customer == *customer && i.currency == *currency).cloned().collect();
            let account = Account {
                customer,
                currency: *currency,
                livemode: *livemode,
                test_clock: clock.as_ref(),
                invoices: &invoices,
                settlements: &settlements,
            };
            let now = time.now(clock.as_ref())?;
            let steps = plan_run(now, &account, || p.ids.next(IdKind::Settlement))?;
            for step in steps {
                match apply(p, &ctx, &time, now, step).await? {
                    Some(done) => changes.extend(done),
                    // Another run changed this account since it was read: what follows was
                    // planned from a stale view, so it is left to the next run, which re-reads.
                    None => break,
                }
            }
            Ok::<_, DomainError>(())
        };
        if let Err(e) = done.await {
            tracing::warn!(customer = %customer, error = %e, "account not settled; the next run retries it");
            // ("Unexpected" messages are for logs only, never for API clients.)
            let shown = match &e {
                DomainError::Unexpected(_) => "an internal error".to_owned(),
                other => other.to_string(),
            };
            errors.push(format!("{customer} {currency}: {shown}; the next run retries it"));
        }
    }
    let run = SettlementRun {
        id: p.ids.next(IdKind::SettlementRun),
        trigger: trigger.to_owned(),
        started,
        finished: p.clock.now(),
        accounts: accounts.len(),
        changes,
        errors,
        livemode: scope.livemode(),
    };
    // A scheduled run that found nothing to do leaves no record (it runs every hour); a run asked
    // for is always recorded.
    if trigger == "schedule" && run.changes.is_empty() && run.errors.is_empty() {
        return Ok(run);
    }
    let event = ctx.snapshot(p.ids, run.finished, "settlement_run.completed", &run);
    p.unit.commit(scope, vec![Write::SettlementRun { run: run.clone() }], vec![event]).await?;
    Ok(run)
}

fn change(st: &Settlement, action: &str, before: Option<&Settlement>) -> RunChange {
    RunChange {
        settlement: st.id.clone(),
        customer: st.customer.clone(),
        currency: st.currency,
        month: st.month,
        action: action.to_owned(),
        before: before.map(Settlement::figures),
        after: st.figures(),
        invoice: None,
        invoices: None,
    }
}

/// Commits one step and says what it changed; `None` when another run changed the account first
/// (a conflict), so the rest of this run's plan for it is stale.
async fn apply(
    p: &Ports<'_>,
    ctx: &Context,
    time: &BatchTime,
    now: DateTime<Utc>,
    step: SettlementStep,
) -> DomainResult<Option<Vec<RunChange>>> {
    let scope = &ctx.scope;
    let committed = |r: DomainResult<()>| match r {
        Ok(()) => Ok(true),
        Err(DomainError::Conflict { .. }) => Ok(false),
        Err(e) => Err(e),
    };
    match step {
        SettlementStep::Update { settlement, before, expected } => {
            let action = if before.is_none() { "settlement.opened" } else { "settlement.updated" };
            let event = ctx.snapshot(p.ids, now, action, &settlement);
            let write = Write::Settlement { settlement: settlement.clone(), expected };
            let done = committed(p.unit.commit(scope, vec![write], vec![event]).await)?;
            let name = if before.is_none() { "opened" } else { "updated" };
            Ok(done.then(|| vec![change(&settlement, name, before.as_ref())]))
        }
        SettlementStep::Close { settlement, before, expected } => {
            let event = ctx.snapshot(p.ids, now, "settlement.closed", &settlement);
            let write = Write::Settlement { settlement: settlement.clone(), expected };
            let done = committed(p.unit.commit(scope, vec![write], vec![event]).await)?;
            Ok(done.then(|| vec![change(&settlement, "closed", before.as_ref())]))
        }
        SettlementStep::MarkSettled { settlement, invoices } => {
            // Only what the stored, closed settlement lists is marked.
            let Some(st) = p.settlements.get(scope, &settlement).await? else { return Ok(None) };
            if st.status == SettlementStatus::Open {
                return Ok(None);
            }
            let invoices: Vec<Id> =
                invoices.into_iter().filter(|id| st.invoices.iter().any(|l| l.invoice == *id)).collect();
            let mut marked = 0;
            for chunk in invoices.chunks(MARK_CHUNK) {
                let keys: Vec<(Scope, Id)> = chunk.iter().map(|id| (scope.clone(), id.clone())).collect();
                let (mut writes, mut events) = (Vec::new(), Vec::new());
                for mut inv in p.invoices.get_many(&keys).await? {
                    if inv.status != InvoiceStatus::InSettlement {
                        continue;
                    }
                    let expected = inv.version;
                    let change = journal::transition(&mut inv, InvoiceAction::Settle, now)?;
                    events.push(invoice_event(ctx, p.ids, now, &inv, "invoice.settled", &change)?);
                    writes.push(Write::Invoice { invoice: inv, expected: Some(expected) });
                }
                let count = writes.len();
                if count > 0 && committed(p.unit.commit(scope, writes, events).await)? {
                    marked += count;
                }
            }
            let mut c = change(&st, "invoices_settled", Some(&st));
            c.invoices = Some(marked);
            Ok(Some((marked > 0).then_some(c).into_iter().collect()))
        }
        SettlementStep::MoveNet { settlement } => {
            let at = time.step_time(settlement.test_clock.as_ref(), settlement.net_due_at)?;
            let (st, inv, writes, events) = net_invoice(p, ctx, settlement, at)?;
            let done = committed(p.unit.commit(scope, writes, events).await)?;
            let mut c = change(&st, "net_requested", Some(&st));
            c.invoice = Some(inv);
            Ok(done.then(|| vec![c]))
        }
    }
}

/// The invoice that moves a closed month's net (a charge when the customer owes, a payout when
/// owed), finalized at `at` so the debit or payout pipeline takes it from its announcement, with
/// the settlement marked settled in the same transaction.
#[allow(clippy::type_complexity)]
fn net_invoice(
    p: &Ports<'_>,
    ctx: &Context,
    mut st: Settlement,
    at: DateTime<Utc>,
) -> DomainResult<(Settlement, Id, Vec<Write>, Vec<crate::audit::AuditEvent>)> {
    let count = |d: Direction| st.invoices.iter().filter(|l| l.direction == d).count();
    let (charges, payouts) = (count(Direction::Debit), count(Direction::Payout));
    let charges_line = format!("Charges {} ({charges} invoices)", st.month);
    let payouts_line = format!("Payouts {} ({payouts} invoices, net of {} commission)", st.month, st.commission);
    let (direction, item, other, other_line) = if st.net > 0 {
        (Direction::Debit, InvoiceItem::new(&charges_line, 1, st.charged)?, st.paid_out, payouts_line)
    } else {
        (Direction::Payout, InvoiceItem::new(&payouts_line, 1, st.paid_out)?, st.charged, charges_line)
    };
    let mut inv = Invoice::draft(
        p.ids.next(IdKind::Invoice),
        st.customer.clone(),
        None,
        direction,
        st.currency,
        None,
        at,
        st.livemode,
    )
    .with_items(vec![item])?;
    if other > 0 {
        inv.add_adjustment(Adjustment {
            kind: AdjustmentKind::Settlement,
            amount: -other,
            reason: format!("{other_line}, netted in settlement {}", st.id),
        })?;
    }
    inv.version = 1;
    inv.test_clock = st.test_clock.clone();
    inv.settlement = Some(st.id.clone());
    let created = InvoiceChange::Created { invoice: Box::new(inv.clone()) };
    let mut events = vec![invoice_event(ctx, p.ids, at, &inv, "invoice.created", &created)?];
    let finalized = journal::transition(&mut inv, InvoiceAction::Finalize, at)?;
    events.push(invoice_event(ctx, p.ids, at, &inv, "invoice.finalized", &finalized)?);
    let expected = st.version;
    st.net_invoice = Some(inv.id.clone());
    st.status = SettlementStatus::Settled;
    st.version += 1;
    st.updated = at;
    events.insert(0, ctx.snapshot(p.ids, at, "settlement.net_requested", &st));
    let id = inv.id.clone();
    let writes = vec![
        Write::Settlement { settlement: st.clone(), expected: Some(expected) },
        Write::Invoice { invoice: inv, expected: None },
    ];
    Ok((st, id, writes, events))
}
