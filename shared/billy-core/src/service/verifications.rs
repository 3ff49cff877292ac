//! Verification runs: ask for one (a month of the caller's tenant mode), read one, list them.

use super::missing;
use crate::audit::Context;
use crate::error::DomainResult;
use crate::ids::{Id, IdKind};
use crate::page::{Page, PageRequest};
use crate::ports::Ports;
use crate::settlement::Month;
use crate::verification::Verification;

/// Asks for a verification of `month` (`YYYY-MM`); it runs in the background (`running`, then
/// `succeeded` or `failed` with its mismatches).
pub async fn request(p: &Ports<'_>, ctx: &Context, month: &str) -> DomainResult<Verification> {
    crate::billing::request_verification(p, ctx, Month::parse(month, "month")?, "api").await
}

pub async fn get(p: &Ports<'_>, ctx: &Context, raw: &str) -> DomainResult<Verification> {
    let id = Id::parse(IdKind::Verification, raw, "")?;
    p.verifications.get(&ctx.scope, &id).await?.ok_or_else(|| missing("verification", raw, ""))
}

pub async fn list(p: &Ports<'_>, ctx: &Context, page: &PageRequest) -> DomainResult<Page<Verification>> {
    p.verifications.list(&ctx.scope, page).await
}
