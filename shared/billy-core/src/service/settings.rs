//! Tenant settings: read (defaults where nothing was set) and change.

use crate::audit::{Change, Context};
use crate::error::DomainResult;
use crate::ports::{Ports, Write};
use crate::settings::{SettingsPatch, TenantSettings};

/// Replaces the tenant's gateway routing rules; they take effect on the next charge. Every
/// gateway they name must be one this tenant can use (the sandbox in test mode, its accounts).
/// Replaces the tenant's routing rules, checked against the gateways it can use (the deployment's
/// in test mode, and its connected accounts); the next charge follows them.
pub async fn update_routes(
    p: &Ports<'_>,
    ctx: &Context,
    routes: crate::routing::RoutingTable,
) -> DomainResult<TenantSettings> {
    let names = p.gateways.names(&ctx.scope).await?;
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let table = crate::routing::RoutingTable::new(routes.rules, routes.fees, routes.breaker, &names)?;
    let current = p.settings.get(&ctx.scope).await?;
    let mut next = current.clone();
    next.routing = Some(table);
    next.version = current.version + 1;
    commit(p, ctx, &current, &next, "settings.routes_updated").await?;
    Ok(next)
}

async fn commit(
    p: &Ports<'_>,
    ctx: &Context,
    current: &TenantSettings,
    next: &TenantSettings,
    action: &'static str,
) -> DomainResult<()> {
    let event = ctx.record(
        p.ids,
        p.clock.now(),
        Change {
            entity: &ctx.scope.tenant,
            entity_type: "settings",
            account: None,
            action,
            version: next.version,
            reason: None,
            before: Some(current),
            after: Some(next),
            change: None,
        },
    );
    let expected = (current.version > 0).then_some(current.version);
    p.unit.commit(&ctx.scope, vec![Write::Settings { settings: next.clone(), expected }], vec![event]).await
}

pub async fn get_settings(p: &Ports<'_>, ctx: &Context) -> DomainResult<TenantSettings> {
    p.settings.get(&ctx.scope).await
}

/// Applies `patch`; a concurrent change makes this a 409 (read and retry), never a lost update.
pub async fn update_settings(p: &Ports<'_>, ctx: &Context, patch: SettingsPatch) -> DomainResult<TenantSettings> {
    let current = p.settings.get(&ctx.scope).await?;
    let next = current.patched(patch)?;
    commit(p, ctx, &current, &next, "settings.updated").await?;
    Ok(next)
}
