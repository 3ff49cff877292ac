//! The API's use cases, one module per resource. Each validates, changes state through one unit of
//! work with its audit events, and returns the new state; none announces anything itself (the
//! audit table's stream does). A create names its object from the request's idempotency key, so
//! a retry after a failure that followed the commit finds that object instead of making another.

pub mod audit;
pub mod clocks;
pub mod coupons;
pub mod credits;
pub mod customers;
pub mod gateway_accounts;
pub mod invoices;
pub mod payment_methods;
pub mod plans;
pub mod reports;
pub mod settings;
pub mod settlements;
pub mod subscriptions;
pub mod transactions;
pub mod usage;
pub mod verifications;
pub mod webhooks;

use crate::audit::{AuditEvent, Context};
use crate::customer::Customer;
use crate::error::{DomainError, DomainResult};
use crate::ids::{Id, IdKind};
use crate::ports::{Ports, Write};
use chrono::{DateTime, Utc};
use std::future::Future;

/// A referenced object that does not exist: 404 for a path id, 400 naming the field for a body one.
pub(crate) fn missing(entity: &'static str, raw: &str, param: &str) -> DomainError {
    if param.is_empty() {
        DomainError::not_found(entity, raw)
    } else {
        DomainError::invalid("resource_missing", format!("no such {entity}: '{raw}'"), Some(param))
    }
}

pub(crate) async fn customer(p: &Ports<'_>, ctx: &Context, raw: &str, param: &str) -> DomainResult<Customer> {
    let id = Id::parse(IdKind::Customer, raw, param)?;
    p.customers.get(&ctx.scope, &id).await?.ok_or_else(|| missing("customer", raw, param))
}

/// "Now" for a customer: its test clock's frozen time, else the real clock.
pub(crate) async fn now_for(p: &Ports<'_>, ctx: &Context, customer: &Customer) -> DomainResult<DateTime<Utc>> {
    crate::billing::now_for(p.clocks, p.clock, &ctx.scope, customer.test_clock.as_ref()).await
}

/// Commits the creation of `entity` with its writes and events. When this is a retry of an
/// idempotent request whose first try committed (its id, derived from the key, exists), the
/// stored object is returned instead: a retried POST never makes a second object.
pub(crate) async fn create_once<T, F, Fut>(
    p: &Ports<'_>,
    ctx: &Context,
    entity: T,
    writes: Vec<Write>,
    events: Vec<AuditEvent>,
    stored: F,
) -> DomainResult<T>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = DomainResult<Option<T>>>,
{
    match p.unit.commit(&ctx.scope, writes, events).await {
        Ok(()) => Ok(entity),
        Err(DomainError::Conflict { .. }) if ctx.idempotency.is_some() => stored().await?.ok_or_else(|| {
            DomainError::conflict("idempotency_conflict", "the request conflicted with a concurrent change; retry")
        }),
        Err(e) => Err(e),
    }
}
