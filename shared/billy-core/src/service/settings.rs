//! Tenant settings: read (defaults where nothing was set) and change.

use crate::audit::{Change, Context};
use crate::error::DomainResult;
use crate::ports::{Ports, Write};
use crate::settings::{SettingsPatch, TenantSettings};

pub async fn get_settings(p: &Ports<'_>, ctx: &Context) -> DomainResult<TenantSettings> {
    p.settings.get(&ctx.scope).await
}

/// Applies `patch`; a concurrent change makes this a 409 (read and retry), never a lost update.
pub async fn update_settings(p: &Ports<'_>, ctx: &Context, patch: SettingsPatch) -> DomainResult<TenantSettings> {
    let current = p.settings.get(&ctx.scope).await?;
    let next = current.patched(patch)?;
    let event = ctx.record(
        p.ids,
        p.clock.now(),
        Change {
            entity: &ctx.scope.tenant,
            entity_type: "settings",
            account: None,
            action: "settings.updated",
            version: next.version,
            reason: None,
            before: Some(&current),
            after: Some(&next),
            change: None,
        },
    );
    let expected = (current.version > 0).then_some(current.version);
    p.unit.commit(&ctx.scope, vec![Write::Settings { settings: next.clone(), expected }], vec![event]).await?;
    Ok(next)
}
