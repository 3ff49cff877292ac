//! Subscriptions: create, get, list, cancel. A new subscription is billed by the billing tick,
//! which its own `subscription.created` announcement (from the outbox) sets off at once; nothing
//! is sent after the commit, so a crash cannot leave it unbilled.

use super::{create_once, missing};
use crate::audit::Context;
use crate::error::{DomainError, DomainResult};
use crate::ids::{Id, IdKind};
use crate::page::{Page, PageRequest};
use crate::ports::{Ports, Write};
use crate::subscription::Subscription;
use chrono::{DateTime, Utc};

/// What a client gives to subscribe a customer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewSubscription {
    pub customer: String,
    pub plan: String,
    pub start: Option<DateTime<Utc>>,
    pub payment_method: Option<String>,
}

pub async fn create_subscription(p: &Ports<'_>, ctx: &Context, input: NewSubscription) -> DomainResult<Subscription> {
    let customer = super::customer(p, ctx, &input.customer, "customer").await?;
    let plan = super::plans::get_plan(p, ctx, &input.plan, "plan").await?;
    let payment_method = match &input.payment_method {
        None => None,
        Some(raw) => {
            let id = Id::parse(IdKind::PaymentMethod, raw, "payment_method")?;
            let m = p.methods.get(&ctx.scope, &id).await?.filter(|m| m.customer == customer.id);
            Some(m.ok_or_else(|| missing("payment_method", raw, "payment_method"))?.id)
        }
    };
    let now = super::now_for(p, ctx, &customer).await?;
    let mut sub = Subscription::new(
        ctx.new_id(p.ids, IdKind::Subscription),
        customer.id.clone(),
        plan,
        input.start.unwrap_or(now),
        payment_method,
        now,
    )?;
    sub.test_clock = customer.test_clock.clone();
    let event = ctx.snapshot(p.ids, now, "subscription.created", &sub);
    let writes = vec![Write::Subscription { subscription: sub.clone(), expected: None }];
    let id = sub.id.clone();
    create_once(p, ctx, sub, writes, vec![event], || p.subscriptions.get(&ctx.scope, &id)).await
}

pub async fn get_subscription(p: &Ports<'_>, ctx: &Context, raw: &str) -> DomainResult<Subscription> {
    let id = Id::parse(IdKind::Subscription, raw, "")?;
    p.subscriptions.get(&ctx.scope, &id).await?.ok_or_else(|| DomainError::not_found("subscription", raw))
}

pub async fn list_subscriptions(p: &Ports<'_>, ctx: &Context, page: &PageRequest) -> DomainResult<Page<Subscription>> {
    p.subscriptions.list(&ctx.scope, page).await
}

/// Cancels now (no further invoices) or at the end of the current period.
pub async fn cancel_subscription(
    p: &Ports<'_>,
    ctx: &Context,
    raw: &str,
    at_period_end: bool,
) -> DomainResult<Subscription> {
    let mut sub = get_subscription(p, ctx, raw).await?;
    let customer = super::customer(p, ctx, sub.customer.as_str(), "").await?;
    let now = super::now_for(p, ctx, &customer).await?;
    let expected = sub.version;
    sub.cancel(at_period_end, now)?;
    let action = if at_period_end { "subscription.cancel_scheduled" } else { "subscription.canceled" };
    let event = ctx.snapshot(p.ids, now, action, &sub);
    p.unit
        .commit(
            &ctx.scope,
            vec![Write::Subscription { subscription: sub.clone(), expected: Some(expected) }],
            vec![event],
        )
        .await?;
    Ok(sub)
}
