//! Subscriptions: create (with a coupon, or a fixed term), get, list, cancel; change the plan now
//! (with proration: an invoice for an upgrade, credit for a downgrade) or from the next period
//! (withdrawable); one-off items for the next invoice; a coupon. A new subscription is billed by
//! the billing tick, which its own `subscription.created` announcement (from the outbox) sets off
//! at once; nothing is sent after the commit, so a crash cannot leave it unbilled.

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
    pub coupon: Option<String>,
    /// A fixed term: the subscription ends by itself at this time ...
    pub end_at: Option<DateTime<Utc>>,
    /// ... or after this many periods.
    pub periods: Option<u32>,
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
    sub.set_term(input.end_at, input.periods)?;
    if let Some(raw) = &input.coupon {
        let coupon = super::coupons::get_coupon(p, ctx, raw, "coupon").await?;
        coupon.check_currency(sub.plan.currency)?;
        sub.discount = Some(crate::coupon::Discount::new(coupon));
    }
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

/// When a plan change takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effective {
    /// At once, prorated to the second.
    Now,
    /// From the next period on, at the period boundary (withdrawable until then).
    NextPeriod,
}

/// What a change did: the subscription, and for an immediate one its proration invoice (an
/// upgrade) or the credit it left (a downgrade).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanChange {
    pub subscription: Subscription,
    pub invoice: Option<crate::invoice::Invoice>,
    pub credit: Option<crate::credit::CreditMovement>,
}

/// Changes a subscription's plan. Now: the unused part of the old plan is credited and the rest
/// of the period charged at the new one; a positive net is invoiced at once (and charged like any
/// invoice), a negative net becomes customer credit, never a negative invoice. Next period: the
/// change waits on the subscription (a second one is a 409) and applies at the period boundary.
pub async fn change_plan(
    p: &Ports<'_>,
    ctx: &Context,
    raw: &str,
    plan_raw: &str,
    effective: Effective,
) -> DomainResult<PlanChange> {
    let mut sub = get_subscription(p, ctx, raw).await?;
    let plan = super::plans::get_plan(p, ctx, plan_raw, "plan").await?;
    let customer = super::customer(p, ctx, sub.customer.as_str(), "").await?;
    let now = super::now_for(p, ctx, &customer).await?;
    let expected = sub.version;
    let old_plan = sub.plan.id.clone();
    if effective == Effective::NextPeriod {
        sub.schedule_change(plan, now)?;
        let event = ctx.snapshot(p.ids, now, "subscription.change_scheduled", &sub);
        let writes = vec![Write::Subscription { subscription: sub.clone(), expected: Some(expected) }];
        p.unit.commit(&ctx.scope, writes, vec![event]).await?;
        return Ok(PlanChange { subscription: sub, invoice: None, credit: None });
    }
    let (credit_line, charge_line) = sub.change_now(plan, now)?;
    let net = credit_line.amount + charge_line.amount;
    let mut events =
        vec![ctx.snapshot(p.ids, now, "subscription.plan_changed", &sub).because(Some("changed now, prorated"))];
    let mut writes = vec![Write::Subscription { subscription: sub.clone(), expected: Some(expected) }];
    let (mut invoice, mut credit) = (None, None);
    if net > 0 {
        let mut inv = crate::invoice::Invoice::draft(
            ctx.new_id(p.ids, IdKind::Invoice),
            sub.customer.clone(),
            Some(sub.id.clone()),
            sub.plan.kind.direction(),
            sub.plan.currency,
            None,
            now,
            ctx.scope.livemode(),
        );
        inv.test_clock = sub.test_clock.clone();
        // the charge first, so the total never dips below zero on the way
        inv.add_adjustment(charge_line)?;
        inv.add_adjustment(credit_line)?;
        inv.version = 1;
        let created = crate::journal::InvoiceChange::Created { invoice: Box::new(inv.clone()) };
        events.push(super::invoices::change_event(p, ctx, now, "invoice.created", &inv, &created)?);
        let change = crate::journal::transition(&mut inv, crate::invoice::InvoiceAction::Finalize, now)?;
        events.push(super::invoices::change_event(p, ctx, now, "invoice.finalized", &inv, &change)?);
        writes.push(Write::Invoice { invoice: inv.clone(), expected: None });
        invoice = Some(inv);
    } else if net < 0 {
        let movement = crate::credit::CreditMovement {
            id: ctx.new_id(p.ids, IdKind::CreditMovement),
            customer: sub.customer.clone(),
            currency: sub.plan.currency,
            amount: -net,
            kind: crate::credit::MovementKind::Proration,
            reason: format!("unused time of plan {old_plan} after a change to {}", sub.plan.id),
            invoice: None,
            created: now,
            livemode: ctx.scope.livemode(),
        };
        events.push(ctx.snapshot(p.ids, now, "credit.granted", &movement).because(Some("a downgrade's proration")));
        writes.push(Write::Credit { movement: movement.clone() });
        credit = Some(movement);
    }
    p.unit.commit(&ctx.scope, writes, events).await?;
    Ok(PlanChange { subscription: sub, invoice, credit })
}

/// Withdraws a scheduled plan change before it applies.
pub async fn withdraw_change(p: &Ports<'_>, ctx: &Context, raw: &str) -> DomainResult<Subscription> {
    let mut sub = get_subscription(p, ctx, raw).await?;
    let customer = super::customer(p, ctx, sub.customer.as_str(), "").await?;
    let now = super::now_for(p, ctx, &customer).await?;
    let expected = sub.version;
    sub.withdraw_change()?;
    let event = ctx.snapshot(p.ids, now, "subscription.change_withdrawn", &sub);
    let writes = vec![Write::Subscription { subscription: sub.clone(), expected: Some(expected) }];
    p.unit.commit(&ctx.scope, writes, vec![event]).await?;
    Ok(sub)
}

/// Adds a one-off item to the subscription's next invoice.
pub async fn add_pending_item(
    p: &Ports<'_>,
    ctx: &Context,
    raw: &str,
    item: super::invoices::NewItem,
) -> DomainResult<Subscription> {
    let mut sub = get_subscription(p, ctx, raw).await?;
    let customer = super::customer(p, ctx, sub.customer.as_str(), "").await?;
    let now = super::now_for(p, ctx, &customer).await?;
    let expected = sub.version;
    sub.add_pending_item(crate::invoice::InvoiceItem::new(&item.description, item.quantity, item.unit_amount)?)?;
    let event = ctx.snapshot(p.ids, now, "subscription.item_added", &sub);
    let writes = vec![Write::Subscription { subscription: sub.clone(), expected: Some(expected) }];
    p.unit.commit(&ctx.scope, writes, vec![event]).await?;
    Ok(sub)
}

/// Puts a coupon on the subscription's next invoices (replacing any other).
pub async fn apply_coupon(p: &Ports<'_>, ctx: &Context, raw: &str, coupon_raw: &str) -> DomainResult<Subscription> {
    let mut sub = get_subscription(p, ctx, raw).await?;
    let coupon = super::coupons::get_coupon(p, ctx, coupon_raw, "coupon").await?;
    let customer = super::customer(p, ctx, sub.customer.as_str(), "").await?;
    let now = super::now_for(p, ctx, &customer).await?;
    let expected = sub.version;
    sub.apply_coupon(coupon)?;
    let event = ctx.snapshot(p.ids, now, "subscription.discount_applied", &sub);
    let writes = vec![Write::Subscription { subscription: sub.clone(), expected: Some(expected) }];
    p.unit.commit(&ctx.scope, writes, vec![event]).await?;
    Ok(sub)
}
