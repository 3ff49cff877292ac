//! Customers: create (attached to a test clock in test mode), get, list.

use super::{create_once, missing};
use crate::audit::Context;
use crate::customer::{Customer, NewCustomer, validate_new_customer};
use crate::error::{DomainError, DomainResult};
use crate::ids::{Id, IdKind};
use crate::page::{Page, PageRequest};
use crate::ports::{Ports, Write};
use crate::tenant::Mode;

pub async fn get_customer(p: &Ports<'_>, ctx: &Context, raw: &str) -> DomainResult<Customer> {
    super::customer(p, ctx, raw, "").await
}

pub async fn list_customers(p: &Ports<'_>, ctx: &Context, page: &PageRequest) -> DomainResult<Page<Customer>> {
    p.customers.list(&ctx.scope, page).await
}

/// Creates a customer, attached to a test clock when one is given (test mode only).
pub async fn create_customer(
    p: &Ports<'_>,
    ctx: &Context,
    input: NewCustomer,
    test_clock: Option<&str>,
) -> DomainResult<Customer> {
    let valid = validate_new_customer(input)?;
    let now = p.clock.now();
    let mut customer = Customer {
        id: ctx.new_id(p.ids, IdKind::Customer),
        created: now,
        name: valid.name,
        email: valid.email,
        description: valid.description,
        metadata: valid.metadata,
        test_clock: None,
        default_payment_method: None,
        default_payout_destination: None,
        livemode: ctx.scope.livemode(),
        version: 1,
    };
    let mut writes = Vec::new();
    let mut events = Vec::new();
    if let Some(raw) = test_clock {
        if ctx.scope.mode == Mode::Live {
            return Err(DomainError::invalid(
                "livemode_not_allowed",
                "test clocks can only be used with test mode keys",
                Some("test_clock"),
            ));
        }
        let id = Id::parse(IdKind::TestClock, raw, "test_clock")?;
        let mut clock = p.clocks.get(&ctx.scope, &id).await?.ok_or_else(|| missing("test_clock", raw, "test_clock"))?;
        if clock.customers.contains(&customer.id) {
            // A retry of a request that attached this very customer already.
            return super::customer(p, ctx, customer.id.as_str(), "").await;
        }
        let expected = clock.version;
        clock.attach(customer.id.clone())?;
        // Its customer is created at the clock's time.
        customer.created = clock.frozen_time;
        customer.test_clock = Some(clock.id.clone());
        events.push(ctx.snapshot(p.ids, now, "test_clock.customer_attached", &clock));
        writes.push(Write::TestClock { clock, expected: Some(expected) });
    }
    events.insert(0, ctx.snapshot(p.ids, now, "customer.created", &customer));
    writes.insert(0, Write::Customer { customer: customer.clone(), expected: None });
    let id = customer.id.clone();
    create_once(p, ctx, customer, writes, events, || p.customers.get(&ctx.scope, &id)).await
}

/// A customer's month (`YYYY-MM`, by default the one it is now for them): charged, paid out,
/// commission and net per currency, each metric's usage and price so far, and a daily series.
pub async fn customer_summary(
    p: &Ports<'_>,
    ctx: &Context,
    customer: &str,
    month: Option<&str>,
) -> DomainResult<crate::summary::MonthSummary> {
    use crate::settlement::Month;
    use crate::summary::{MAX_EVENTS_PER_TOTAL, PricedUsage, summarize};
    const PAGE: usize = 1000;
    let customer = super::customer(p, ctx, customer, "").await?;
    let month = match month {
        Some(raw) => Month::parse(raw, "month")?,
        None => Month::of(super::now_for(p, ctx, &customer).await?),
    };
    let invoices = p.invoices.for_customer(&ctx.scope, &customer.id).await?;
    let (mut usage, mut complete) = (Vec::new(), true);
    for sub in p.subscriptions.for_customer(&ctx.scope, &customer.id).await? {
        let first = sub.current_period(month.start())?.map_or(0, |period| period.index);
        // The periods that overlap the month (a daily plan has at most 31 of them).
        for index in first.. {
            let period = sub.period(index)?;
            if period.start >= month.next().start() || index > first + 62 {
                break;
            }
            let plan = sub.plan_for_period(index);
            for meter in plan.kind.meters() {
                let key = crate::ports::UsageKey {
                    scope: ctx.scope.clone(),
                    subscription: sub.id.clone(),
                    metric: meter.metric.clone(),
                    period: index,
                };
                let (mut after, mut read) = (None, 0);
                loop {
                    let (events, next) = p.usage.events(&key, PAGE, after).await?;
                    read += events.len();
                    usage.extend(events.into_iter().map(|event| PricedUsage {
                        currency: plan.currency,
                        direction: plan.kind.direction(),
                        event,
                    }));
                    after = next;
                    if after.is_none() {
                        break;
                    }
                    if read >= MAX_EVENTS_PER_TOTAL {
                        complete = false;
                        break;
                    }
                }
            }
        }
    }
    summarize(month, &invoices, &usage, complete)
}
