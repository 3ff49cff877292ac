//! Monthly settlements and the settlement job's runs: list and read them, and run the job now
//! for the caller's tenant mode (what the nightly schedule does for every tenant).

use super::missing;
use crate::audit::Context;
use crate::error::DomainResult;
use crate::ids::{Id, IdKind};
use crate::page::{Page, PageRequest};
use crate::ports::Ports;
use crate::settlement::{Settlement, SettlementRun};

pub async fn get_settlement(p: &Ports<'_>, ctx: &Context, raw: &str) -> DomainResult<Settlement> {
    let id = Id::parse(IdKind::Settlement, raw, "")?;
    p.settlements.get(&ctx.scope, &id).await?.ok_or_else(|| missing("settlement", raw, ""))
}

/// Newest first; `customer` narrows to one customer's months.
pub async fn list_settlements(
    p: &Ports<'_>,
    ctx: &Context,
    customer: Option<&str>,
    page: &PageRequest,
) -> DomainResult<Page<Settlement>> {
    let customer = match customer {
        Some(raw) => Some(super::customer(p, ctx, raw, "customer").await?.id),
        None => None,
    };
    p.settlements.list(&ctx.scope, customer.as_ref(), page).await
}

pub async fn list_runs(p: &Ports<'_>, ctx: &Context, page: &PageRequest) -> DomainResult<Page<SettlementRun>> {
    p.settlements.runs(&ctx.scope, page).await
}

/// Runs the settlement job for this tenant mode now, at each customer's own time (a test
/// clock's, or the real one), and returns the run with everything it changed.
pub async fn run_now(p: &Ports<'_>, ctx: &Context) -> DomainResult<SettlementRun> {
    crate::billing::run_settlements(p, &ctx.scope, "api").await
}
