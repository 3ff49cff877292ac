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
