//! The API's use cases beyond customers: test clocks, payment methods, plans, subscriptions,
//! invoices and audit reads. Each validates, changes state through one unit of work with its
//! audit events, and returns the new state.

use crate::audit::{AuditEvent, Context};
use crate::billing::clock_status;
use crate::customer::{Customer, NewCustomer, validate_new_customer};
use crate::error::{DomainError, DomainResult};
use crate::ids::{Id, IdGenerator, IdKind};
use crate::invoice::Invoice;
use crate::page::{Page, PageRequest};
use crate::payment_method::{Instrument, PaymentMethod};
use crate::plan::{NewPlan, Plan};
use crate::ports::{
    AuditJournal, Clock, CustomerRepository, DomainEvent, EventBus, InvoiceFilter, InvoiceRepository,
    PaymentMethodRepository, PlanRepository, SubscriptionRepository, TestClockRepository, UnitOfWork, Write,
};
use crate::subscription::Subscription;
use crate::tenant::Mode;
use crate::test_clock::{ClockStatus, TestClock};
use chrono::{DateTime, Utc};

/// The ports the API's use cases share.
#[derive(Debug, Clone, Copy)]
pub struct Services<'a> {
    pub customers: &'a dyn CustomerRepository,
    pub methods: &'a dyn PaymentMethodRepository,
    pub plans: &'a dyn PlanRepository,
    pub subscriptions: &'a dyn SubscriptionRepository,
    pub invoices: &'a dyn InvoiceRepository,
    pub clocks: &'a dyn TestClockRepository,
    pub audit: &'a dyn AuditJournal,
    pub unit: &'a dyn UnitOfWork,
    pub bus: &'a dyn EventBus,
    pub ids: &'a dyn IdGenerator,
    pub clock: &'a dyn Clock,
}

impl Services<'_> {
    async fn customer(&self, ctx: &Context, raw: &str, param: &str) -> DomainResult<Customer> {
        let id = Id::parse(IdKind::Customer, raw, param)?;
        self.customers.get(&ctx.scope, &id).await?.ok_or_else(|| missing("customer", raw, param))
    }

    /// "Now" for a customer: its test clock's frozen time, else the real clock.
    async fn now_for(&self, ctx: &Context, customer: &Customer) -> DomainResult<DateTime<Utc>> {
        crate::billing::now_for(self.clocks, self.clock, &ctx.scope, customer.test_clock.as_ref()).await
    }
}

/// A referenced object that does not exist: 404 for a path id, 400 naming the field for a body one.
fn missing(entity: &'static str, raw: &str, param: &str) -> DomainError {
    if param.is_empty() {
        DomainError::not_found(entity, raw)
    } else {
        DomainError::invalid("resource_missing", format!("no such {entity}: '{raw}'"), Some(param))
    }
}

// --- test clocks -------------------------------------------------------------------------------

/// A test clock with its derived status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClockView {
    pub clock: TestClock,
    pub status: ClockStatus,
}

fn test_mode_only(ctx: &Context) -> DomainResult<()> {
    if ctx.scope.mode == Mode::Live {
        return Err(DomainError::invalid("livemode_not_allowed", "test clocks exist only in test mode", None));
    }
    Ok(())
}

pub async fn create_clock(
    s: Services<'_>,
    ctx: &Context,
    frozen_time: DateTime<Utc>,
    name: Option<String>,
) -> DomainResult<ClockView> {
    test_mode_only(ctx)?;
    let clock = TestClock::new(s.ids.next(IdKind::TestClock), name, frozen_time, s.clock.now())?;
    let event = ctx.snapshot(s.ids, s.clock.now(), "test_clock.created", &clock);
    s.unit.commit(&ctx.scope, vec![Write::TestClock { clock: clock.clone(), expected: None }], vec![event]).await?;
    Ok(ClockView { clock, status: ClockStatus::Ready })
}

pub async fn get_clock(s: Services<'_>, ctx: &Context, raw: &str) -> DomainResult<ClockView> {
    let id = Id::parse(IdKind::TestClock, raw, "")?;
    let clock = s.clocks.get(&ctx.scope, &id).await?.ok_or_else(|| DomainError::not_found("test_clock", raw))?;
    let status = clock_status(s.subscriptions, s.invoices, &ctx.scope, &clock).await?;
    Ok(ClockView { clock, status })
}

/// Moves the clock and announces it: the billing tick and retry sweeper run for it from the
/// `test_clock.advanced` event, through the same queues and functions as real time.
pub async fn advance_clock(s: Services<'_>, ctx: &Context, raw: &str, to: DateTime<Utc>) -> DomainResult<ClockView> {
    let ClockView { mut clock, status } = get_clock(s, ctx, raw).await?;
    let expected = clock.version;
    clock.advance(to, status)?;
    let event = ctx.snapshot(s.ids, s.clock.now(), "test_clock.advanced", &clock);
    s.unit
        .commit(&ctx.scope, vec![Write::TestClock { clock: clock.clone(), expected: Some(expected) }], vec![event])
        .await?;
    let announce = DomainEvent {
        id: s.ids.next(IdKind::Event),
        kind: "test_clock.advanced".into(),
        scope: ctx.scope.clone(),
        occurred_at: s.clock.now(),
        data: serde_json::json!({"test_clock": clock.id, "frozen_time": clock.frozen_time}),
    };
    s.bus.publish(&[announce]).await?;
    // Until the tick has run, its work is visible as due: the clock reads as advancing.
    let status = clock_status(s.subscriptions, s.invoices, &ctx.scope, &clock).await?;
    Ok(ClockView { clock, status })
}

/// Creates a customer, attached to a test clock when one is given (test mode only).
pub async fn create_customer(
    s: Services<'_>,
    ctx: &Context,
    input: NewCustomer,
    test_clock: Option<&str>,
) -> DomainResult<Customer> {
    let valid = validate_new_customer(input)?;
    let now = s.clock.now();
    let mut customer = Customer {
        id: s.ids.next(IdKind::Customer),
        created: now,
        name: valid.name,
        email: valid.email,
        description: valid.description,
        metadata: valid.metadata,
        test_clock: None,
        default_payment_method: None,
        livemode: ctx.scope.livemode(),
        version: 1,
    };
    let mut writes = Vec::new();
    let mut events = Vec::new();
    if let Some(raw) = test_clock {
        if ctx.scope.mode == Mode::Live {
            return Err(DomainError::invalid(
                "test_clock_live_mode",
                "test clocks can only be used with test mode keys",
                Some("test_clock"),
            ));
        }
        let id = Id::parse(IdKind::TestClock, raw, "test_clock")?;
        let mut clock = s.clocks.get(&ctx.scope, &id).await?.ok_or_else(|| missing("test_clock", raw, "test_clock"))?;
        let expected = clock.version;
        clock.attach(customer.id.clone())?;
        // Its customer is created at the clock's time.
        customer.created = clock.frozen_time;
        customer.test_clock = Some(clock.id.clone());
        events.push(ctx.snapshot(s.ids, now, "test_clock.customer_attached", &clock));
        writes.push(Write::TestClock { clock, expected: Some(expected) });
    }
    events.insert(0, ctx.snapshot(s.ids, now, "customer.created", &customer));
    writes.insert(0, Write::Customer { customer: customer.clone(), expected: None });
    s.unit.commit(&ctx.scope, writes, events).await?;
    Ok(customer)
}

// --- payment methods ---------------------------------------------------------------------------

/// Registers a payment method with the sandbox gateway; the customer's first becomes its default.
pub async fn add_payment_method(
    s: Services<'_>,
    ctx: &Context,
    customer: &str,
    instrument: Instrument,
    gateway: &str,
) -> DomainResult<PaymentMethod> {
    let mut customer = s.customer(ctx, customer, "").await?;
    let now = s.clock.now();
    let method = PaymentMethod {
        id: s.ids.next(IdKind::PaymentMethod),
        customer: customer.id.clone(),
        instrument,
        gateway: gateway.to_owned(),
        created: now,
        livemode: ctx.scope.livemode(),
    };
    let mut events = vec![ctx.snapshot(s.ids, now, "payment_method.created", &method)];
    let mut writes = vec![Write::PaymentMethod { method: method.clone() }];
    if customer.default_payment_method.is_none() {
        let expected = customer.version;
        customer.default_payment_method = Some(method.id.clone());
        customer.version += 1;
        events.push(ctx.snapshot(s.ids, now, "customer.default_payment_method_set", &customer));
        writes.push(Write::Customer { customer, expected: Some(expected) });
    }
    s.unit.commit(&ctx.scope, writes, events).await?;
    Ok(method)
}

pub async fn set_default_payment_method(
    s: Services<'_>,
    ctx: &Context,
    customer: &str,
    method: &str,
) -> DomainResult<Customer> {
    let mut customer = s.customer(ctx, customer, "").await?;
    let id = Id::parse(IdKind::PaymentMethod, method, "")?;
    let method = s
        .methods
        .get(&ctx.scope, &id)
        .await?
        .filter(|m| m.customer == customer.id)
        .ok_or_else(|| DomainError::not_found("payment_method", method))?;
    if customer.default_payment_method.as_ref() == Some(&method.id) {
        return Ok(customer);
    }
    let expected = customer.version;
    customer.default_payment_method = Some(method.id);
    customer.version += 1;
    let event = ctx.snapshot(s.ids, s.clock.now(), "customer.default_payment_method_set", &customer);
    s.unit
        .commit(&ctx.scope, vec![Write::Customer { customer: customer.clone(), expected: Some(expected) }], vec![event])
        .await?;
    Ok(customer)
}

pub async fn list_payment_methods(s: Services<'_>, ctx: &Context, customer: &str) -> DomainResult<Vec<PaymentMethod>> {
    let customer = s.customer(ctx, customer, "").await?;
    let mut methods = s.methods.for_customer(&ctx.scope, &customer.id).await?;
    methods.sort_by(|a, b| b.id.cmp(&a.id));
    Ok(methods)
}

// --- plans -------------------------------------------------------------------------------------

pub async fn create_plan(s: Services<'_>, ctx: &Context, input: NewPlan) -> DomainResult<Plan> {
    let now = s.clock.now();
    let plan = Plan::new(s.ids.next(IdKind::Plan), input, now, ctx.scope.livemode())?;
    let event = ctx.snapshot(s.ids, now, "plan.created", &plan);
    s.unit.commit(&ctx.scope, vec![Write::Plan { plan: plan.clone() }], vec![event]).await?;
    Ok(plan)
}

pub async fn get_plan(s: Services<'_>, ctx: &Context, raw: &str, param: &str) -> DomainResult<Plan> {
    let id = Id::parse(IdKind::Plan, raw, param)?;
    s.plans.get(&ctx.scope, &id).await?.ok_or_else(|| missing("plan", raw, param))
}

// --- subscriptions -----------------------------------------------------------------------------

/// What a client gives to subscribe a customer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewSubscription {
    pub customer: String,
    pub plan: String,
    pub start: Option<DateTime<Utc>>,
    pub payment_method: Option<String>,
}

/// Subscribes a customer. A period that is already due (a start now or in the past) is billed at
/// once, as the billing tick would: the first invoice of a fixed plan exists right after this call.
pub async fn create_subscription(
    s: Services<'_>,
    ctx: &Context,
    input: NewSubscription,
    tick: crate::billing::TickDeps<'_>,
) -> DomainResult<Subscription> {
    let customer = s.customer(ctx, &input.customer, "customer").await?;
    let plan = get_plan(s, ctx, &input.plan, "plan").await?;
    let payment_method = match &input.payment_method {
        None => None,
        Some(raw) => {
            let id = Id::parse(IdKind::PaymentMethod, raw, "payment_method")?;
            let m = s.methods.get(&ctx.scope, &id).await?.filter(|m| m.customer == customer.id);
            Some(m.ok_or_else(|| missing("payment_method", raw, "payment_method"))?.id)
        }
    };
    let now = s.now_for(ctx, &customer).await?;
    let mut sub = Subscription::new(
        s.ids.next(IdKind::Subscription),
        customer.id.clone(),
        plan,
        input.start.unwrap_or(now),
        payment_method,
        now,
    )?;
    sub.test_clock = customer.test_clock.clone();
    let event = ctx.snapshot(s.ids, now, "subscription.created", &sub);
    s.unit
        .commit(&ctx.scope, vec![Write::Subscription { subscription: sub.clone(), expected: None }], vec![event])
        .await?;
    if !sub.due_periods(now)?.is_empty() {
        let report = crate::billing::bill_due_subscriptions(tick, &[(ctx.scope.clone(), sub.id.clone())], now).await?;
        if report.failures > 0 {
            return Err(DomainError::unexpected("the first period could not be billed"));
        }
        sub = s.subscriptions.get(&ctx.scope, &sub.id).await?.unwrap_or(sub);
    }
    Ok(sub)
}

pub async fn get_subscription(s: Services<'_>, ctx: &Context, raw: &str) -> DomainResult<Subscription> {
    let id = Id::parse(IdKind::Subscription, raw, "")?;
    s.subscriptions.get(&ctx.scope, &id).await?.ok_or_else(|| DomainError::not_found("subscription", raw))
}

/// Cancels now (no further invoices) or at the end of the current period.
pub async fn cancel_subscription(
    s: Services<'_>,
    ctx: &Context,
    raw: &str,
    at_period_end: bool,
) -> DomainResult<Subscription> {
    let mut sub = get_subscription(s, ctx, raw).await?;
    let customer = s.customer(ctx, sub.customer.as_str(), "").await?;
    let now = s.now_for(ctx, &customer).await?;
    let expected = sub.version;
    sub.cancel(at_period_end, now)?;
    let action = if at_period_end { "subscription.cancel_scheduled" } else { "subscription.canceled" };
    let event = ctx.snapshot(s.ids, now, action, &sub);
    s.unit
        .commit(
            &ctx.scope,
            vec![Write::Subscription { subscription: sub.clone(), expected: Some(expected) }],
            vec![event],
        )
        .await?;
    if !at_period_end {
        let announce = DomainEvent {
            id: s.ids.next(IdKind::Event),
            kind: "subscription.canceled".into(),
            scope: ctx.scope.clone(),
            occurred_at: now,
            data: serde_json::json!({"subscription": sub.id, "customer": sub.customer}),
        };
        // The cancellation is committed; the announcement is best effort (the audit trail has it).
        let _ = s.bus.publish(&[announce]).await;
    }
    Ok(sub)
}

// --- invoices and audit ------------------------------------------------------------------------

pub async fn get_invoice(s: Services<'_>, ctx: &Context, raw: &str) -> DomainResult<Invoice> {
    let id = Id::parse(IdKind::Invoice, raw, "")?;
    s.invoices.get(&ctx.scope, &id).await?.ok_or_else(|| DomainError::not_found("invoice", raw))
}

pub async fn list_invoices(
    s: Services<'_>,
    ctx: &Context,
    filter: &InvoiceFilter,
    page: &PageRequest,
) -> DomainResult<Page<Invoice>> {
    s.invoices.list(&ctx.scope, filter, page).await
}

/// The audit trail of any entity of this scope, oldest first.
pub async fn entity_history(s: Services<'_>, ctx: &Context, raw: &str) -> DomainResult<Vec<AuditEvent>> {
    let kind = [
        IdKind::Customer,
        IdKind::PaymentMethod,
        IdKind::Plan,
        IdKind::Subscription,
        IdKind::Invoice,
        IdKind::Transaction,
        IdKind::TestClock,
    ]
    .into_iter()
    .find(|k| raw.starts_with(&format!("{}_", k.prefix())))
    .ok_or_else(|| {
        DomainError::invalid("parameter_invalid", "entity must be the id of a Billy object", Some("entity"))
    })?;
    let id = Id::parse(kind, raw, "entity")?;
    let events = s.audit.for_entity(&ctx.scope, &id).await?;
    if events.is_empty() {
        return Err(DomainError::not_found(kind.entity(), raw));
    }
    Ok(events)
}

// --- one-off invoices --------------------------------------------------------------------------

/// An item as a client gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewItem {
    pub description: String,
    pub quantity: i64,
    pub unit_amount: i64,
}

fn items(input: Vec<NewItem>) -> DomainResult<Vec<crate::invoice::InvoiceItem>> {
    if input.is_empty() {
        return Err(DomainError::invalid("parameter_missing", "give at least one item", Some("items")));
    }
    input.into_iter().map(|i| crate::invoice::InvoiceItem::new(&i.description, i.quantity, i.unit_amount)).collect()
}

fn invoice_change_event(
    ctx: &Context,
    s: Services<'_>,
    at: DateTime<Utc>,
    action: &'static str,
    inv: &Invoice,
    change: &crate::journal::InvoiceChange,
) -> DomainResult<AuditEvent> {
    let mut event = ctx.snapshot(s.ids, at, action, inv);
    event.change = Some(serde_json::to_value(change).map_err(DomainError::unexpected)?);
    Ok(event)
}

/// Creates a one-off invoice in `draft` with its items.
pub async fn create_invoice(
    s: Services<'_>,
    ctx: &Context,
    customer: &str,
    currency: crate::money::Currency,
    new_items: Vec<NewItem>,
) -> DomainResult<Invoice> {
    let customer = s.customer(ctx, customer, "customer").await?;
    let items = items(new_items)?;
    let now = s.now_for(ctx, &customer).await?;
    let mut inv = Invoice::draft(
        s.ids.next(IdKind::Invoice),
        customer.id.clone(),
        None,
        crate::plan::Direction::Debit,
        currency,
        None,
        now,
        ctx.scope.livemode(),
    )
    .with_items(items)?;
    inv.test_clock = customer.test_clock.clone();
    let created = crate::journal::InvoiceChange::Created { invoice: Box::new(inv.clone()) };
    let events = vec![invoice_change_event(ctx, s, now, "invoice.created", &inv, &created)?];
    s.unit.commit(&ctx.scope, vec![Write::Invoice { invoice: inv.clone(), expected: None }], events).await?;
    Ok(inv)
}

/// Adds items to a draft invoice.
pub async fn add_invoice_items(
    s: Services<'_>,
    ctx: &Context,
    raw: &str,
    new_items: Vec<NewItem>,
) -> DomainResult<Invoice> {
    let mut inv = get_invoice(s, ctx, raw).await?;
    let items = items(new_items)?;
    let expected = inv.version;
    inv.add_items(items.clone())?;
    let event = invoice_change_event(
        ctx,
        s,
        s.clock.now(),
        "invoice.items_added",
        &inv,
        &crate::journal::InvoiceChange::ItemsAdded { items },
    )?;
    s.unit
        .commit(&ctx.scope, vec![Write::Invoice { invoice: inv.clone(), expected: Some(expected) }], vec![event])
        .await?;
    Ok(inv)
}

/// Finalizes a draft and requests its charge (`draft` → `pending`; a zero total is paid at once).
pub async fn charge_invoice(
    s: Services<'_>,
    ctx: &Context,
    raw: &str,
    queue: &dyn crate::ports::QueuePublisher,
    charge_queue: &str,
) -> DomainResult<Invoice> {
    let mut inv = get_invoice(s, ctx, raw).await?;
    let now = crate::billing::now_for(s.clocks, s.clock, &ctx.scope, inv.test_clock.as_ref()).await?;
    let expected = inv.version;
    let change = crate::journal::transition(&mut inv, crate::invoice::InvoiceAction::Finalize, now)?;
    let action = if inv.status == crate::invoice::InvoiceStatus::Paid { "invoice.paid" } else { "invoice.finalized" };
    let event = invoice_change_event(ctx, s, now, action, &inv, &change)?;
    s.unit
        .commit(&ctx.scope, vec![Write::Invoice { invoice: inv.clone(), expected: Some(expected) }], vec![event])
        .await?;
    if inv.status == crate::invoice::InvoiceStatus::Pending {
        crate::billing::request_charge(queue, charge_queue, &ctx.scope, &inv).await?;
    }
    Ok(inv)
}
