//! Audit reads: the trail of any entity of this scope.

use crate::audit::{AuditEvent, Context};
use crate::error::{DomainError, DomainResult};
use crate::ids::{Id, IdKind};
use crate::ports::Ports;

/// The audit trail of any entity of this scope, oldest first.
pub async fn entity_history(p: &Ports<'_>, ctx: &Context, raw: &str) -> DomainResult<Vec<AuditEvent>> {
    let kind = [
        IdKind::Customer,
        IdKind::PaymentMethod,
        IdKind::PayoutDestination,
        IdKind::Plan,
        IdKind::Subscription,
        IdKind::Invoice,
        IdKind::Transaction,
        IdKind::TestClock,
        IdKind::GatewayAccount,
        IdKind::Export,
        IdKind::WebhookEndpoint,
    ]
    .into_iter()
    .find(|k| raw.starts_with(&format!("{}_", k.prefix())))
    .ok_or_else(|| {
        DomainError::invalid("parameter_invalid", "entity must be the id of a Billy object", Some("entity"))
    })?;
    let id = Id::parse(kind, raw, "entity")?;
    let events = p.audit.for_entity(&ctx.scope, &id).await?;
    if events.is_empty() {
        return Err(DomainError::not_found(kind.entity(), raw));
    }
    Ok(events)
}
