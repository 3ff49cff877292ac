//! billy-aws repositories against DynamoDB Local: atomic change + audit, optimistic versions,
//! exactly one invoice per period under concurrency, due indexes, idempotency, tenant isolation.
#![allow(clippy::unwrap_used)]

use billy_aws::AwsClients;
use billy_aws::audit::DynamoAudit;
use billy_aws::customers::DynamoCustomers;
use billy_aws::idempotency::DynamoIdempotency;
use billy_aws::invoices::DynamoInvoices;
use billy_aws::plans::DynamoPlans;
use billy_aws::reports::DynamoReports;
use billy_aws::subscriptions::DynamoSubscriptions;
use billy_aws::unit::DynamoUnitOfWork;
use billy_core::DomainError;
use billy_core::audit::{Actor, AuditEvent, Change, Context};
use billy_core::clock::SystemClock;
use billy_core::customer::Customer;
use billy_core::ids::{Id, IdGenerator, IdKind, RandomIds};
use billy_core::invoice::{Invoice, InvoiceAction, InvoiceItem, InvoiceStatus};
use billy_core::money::Currency;
use billy_core::page::PageRequest;
use billy_core::plan::{Direction, NewPlan, Plan, PlanKind};
use billy_core::ports::{
    AuditJournal, Changeset, CustomerRepository, IdempotencyDecision, IdempotencyStore, InvoiceFilter,
    InvoiceRepository, PlanRepository, SubscriptionRepository, UnitOfWork, Write,
};
use billy_core::report::{Bucket, Counter, Counters, Guard, Tally, position};
use billy_core::schedule::{Cadence, Frequency};
use billy_core::service::reports::{Placed, record, record_in_order};
use billy_core::subscription::Subscription;
use billy_core::tenant::{Mode, Scope};
use billy_e2e::item_count_in;
use billy_local::testing::TestResources;
use chrono::{DateTime, Duration, TimeZone, Utc};
use std::time::Instant;

const SHARDS: u32 = billy_aws::dynamo::DUE_SHARDS;

struct Repos {
    res: TestResources,
    customers: DynamoCustomers,
    plans: DynamoPlans,
    subs: DynamoSubscriptions,
    invoices: DynamoInvoices,
    audit: DynamoAudit,
    unit: DynamoUnitOfWork,
    ids: RandomIds<SystemClock>,
}

impl Repos {
    async fn new() -> Self {
        let res = TestResources::provision().await;
        let (ddb, t) = (res.aws.dynamodb.clone(), res.tables());
        Self {
            customers: DynamoCustomers::new(ddb.clone(), t.clone()),
            plans: DynamoPlans::new(ddb.clone(), t.clone()),
            subs: DynamoSubscriptions::new(ddb.clone(), t.clone()),
            invoices: DynamoInvoices::new(ddb.clone(), t.clone()),
            audit: DynamoAudit::new(ddb.clone(), t.clone()),
            unit: DynamoUnitOfWork::new(ddb, t),
            ids: RandomIds::new(SystemClock),
            res,
        }
    }

    async fn create_invoice(&self, ctx: &Context, inv: &Invoice) {
        let event = self.event(ctx, &inv.id, "invoice", 1, inv);
        self.commit(ctx, Write::Invoice { invoice: inv.clone(), expected: None }, event).await.unwrap();
    }

    /// Replaces `inv` if its stored version is `expected`, journaling `event_version`.
    async fn update_invoice(
        &self,
        ctx: &Context,
        inv: &Invoice,
        expected: u64,
        event_version: u64,
    ) -> Result<(), DomainError> {
        let event = self.event(ctx, &inv.id, "invoice", event_version, inv);
        self.commit(ctx, Write::Invoice { invoice: inv.clone(), expected: Some(expected) }, event).await
    }

    /// Writes through the unit of work, as every use case does.
    async fn commit(&self, ctx: &Context, write: Write, event: AuditEvent) -> Result<(), DomainError> {
        self.unit.commit(&ctx.scope, vec![write], vec![event]).await
    }

    fn aws(&self) -> &AwsClients {
        &self.res.aws
    }

    fn ctx(&self, tenant: &str) -> Context {
        Context::new(
            Scope::new(Id::from_trusted(tenant.into()), Mode::Test),
            Actor::System { function: "test".into() },
            None,
        )
    }

    fn event<T: serde::Serialize>(
        &self,
        ctx: &Context,
        entity: &Id,
        kind: &'static str,
        version: u64,
        after: &T,
    ) -> AuditEvent {
        ctx.record(
            &self.ids,
            Utc::now(),
            Change {
                entity,
                entity_type: kind,
                account: None,
                action: "test.changed",
                version,
                reason: None,
                before: None,
                after: Some(after),
                change: None,
            },
        )
    }

    async fn customer(&self, ctx: &Context) -> Id {
        let customer = Customer {
            id: self.ids.next(IdKind::Customer),
            created: Utc::now(),
            name: Some("c".into()),
            email: None,
            description: None,
            metadata: Default::default(),
            test_clock: None,
            default_payment_method: None,
            default_payout_destination: None,
            livemode: false,
            version: 1,
        };
        let event = self.event(ctx, &customer.id, "customer", 1, &customer);
        self.commit(ctx, Write::Customer { customer: customer.clone(), expected: None }, event).await.unwrap();
        customer.id
    }

    async fn plan(&self, ctx: &Context) -> Plan {
        let plan = Plan::new(
            self.ids.next(IdKind::Plan),
            NewPlan {
                name: "Pro".into(),
                description: None,
                currency: Currency::parse("usd", "currency").unwrap(),
                cadence: Cadence::new(Frequency::Monthly, 1).unwrap(),
                trial_period_days: None,
                kind: PlanKind::FixedDebit { amount: 1000 },
            },
            Utc::now(),
            false,
        )
        .unwrap();
        let event = self.event(ctx, &plan.id, "plan", 1, &plan);
        self.commit(ctx, Write::Plan { plan: plan.clone() }, event).await.unwrap();
        plan
    }

    async fn subscription(&self, ctx: &Context, customer: &Id, start: DateTime<Utc>) -> Subscription {
        let sub = Subscription::new(
            self.ids.next(IdKind::Subscription),
            customer.clone(),
            self.plan(ctx).await,
            start,
            None,
            start,
        )
        .unwrap();
        let event = self.event(ctx, &sub.id, "subscription", 1, &sub);
        self.commit(ctx, Write::Subscription { subscription: sub.clone(), expected: None }, event).await.unwrap();
        sub
    }

    fn period_invoice(&self, sub: &Subscription, index: u64) -> Invoice {
        let period = sub.period(index).unwrap();
        let mut inv = Invoice::draft(
            self.ids.next(IdKind::Invoice),
            sub.customer.clone(),
            Some(sub.id.clone()),
            Direction::Debit,
            sub.plan.currency,
            Some(period),
            Utc::now(),
            false,
        );
        inv.add_items(vec![InvoiceItem::new("Pro", 1, 1000).unwrap()]).unwrap();
        inv
    }
}

fn day(m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, m, d, 0, 0, 0).unwrap()
}

#[tokio::test]
async fn eight_concurrent_creators_of_one_period_make_exactly_one_invoice_and_one_event() {
    let r = Repos::new().await;
    let ctx = r.ctx("ten_a");
    let customer = r.customer(&ctx).await;
    let sub = r.subscription(&ctx, &customer, day(1, 1)).await;
    let audit_before = item_count_in(r.aws(), &r.res.tables().audit).await;
    // WHEN 8 tasks race to create period 0's invoice, each with its own fresh id
    let attempts = (0..8).map(|_| {
        let inv = r.period_invoice(&sub, 0);
        let event = r.event(&ctx, &inv.id, "invoice", 1, &inv);
        let (unit, scope) = (r.unit.clone(), ctx.scope.clone());
        async move {
            (
                inv.id.clone(),
                unit.commit(&scope, vec![Write::Invoice { invoice: inv, expected: None }], vec![event]).await,
            )
        }
    });
    let results = futures::future::join_all(attempts).await;
    // THEN exactly one creates it; the seven others lose on the period's claim, as typed conflicts
    let winners: Vec<&Id> = results.iter().filter(|(_, r)| r.is_ok()).map(|(id, _)| id).collect();
    assert_eq!(winners.len(), 1);
    assert!(results.iter().filter(|(_, r)| r.is_err()).all(|(_, r)| matches!(r, Err(DomainError::Conflict { .. }))));
    // AND the period's invoice is the winner's
    let period_start = sub.period(0).unwrap().start;
    assert_eq!(&r.invoices.for_period(&ctx.scope, &sub.id, period_start).await.unwrap().unwrap().id, winners[0]);
    // AND the store holds one invoice and one new audit event
    let page = r
        .invoices
        .list(
            &ctx.scope,
            &InvoiceFilter { subscription: Some(sub.id.clone()), ..InvoiceFilter::default() },
            &PageRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(page.data.len(), 1);
    assert_eq!(item_count_in(r.aws(), &r.res.tables().audit).await, audit_before + 1);
    r.res.teardown().await;
}

#[tokio::test]
async fn a_stale_version_update_is_rejected_and_changes_neither_the_entity_nor_the_journal() {
    let r = Repos::new().await;
    let ctx = r.ctx("ten_a");
    let customer = r.customer(&ctx).await;
    let sub = r.subscription(&ctx, &customer, day(1, 1)).await;
    let mut inv = r.period_invoice(&sub, 0);
    r.create_invoice(&ctx, &inv).await;
    // GIVEN two workers that both read version 1
    let stored_version = inv.version;
    let mut first = inv.clone();
    first.apply(InvoiceAction::Finalize, Utc::now()).unwrap();
    inv.apply(InvoiceAction::Cancel, Utc::now()).unwrap();
    r.update_invoice(&ctx, &first, stored_version, first.version).await.unwrap();
    let stored = r.invoices.get(&ctx.scope, &inv.id).await.unwrap().unwrap();
    let journal = r.audit.for_entity(&ctx.scope, &inv.id).await.unwrap();
    // WHEN the second writes with its stale version
    let err = r.update_invoice(&ctx, &inv, stored_version, inv.version).await.unwrap_err();
    // THEN it is a typed conflict and nothing changed
    assert!(matches!(err, DomainError::Conflict { code: "version_conflict", .. }), "{err:?}");
    assert_eq!(r.invoices.get(&ctx.scope, &inv.id).await.unwrap().unwrap(), stored);
    assert_eq!(stored.status, InvoiceStatus::Pending);
    assert_eq!(r.audit.for_entity(&ctx.scope, &inv.id).await.unwrap(), journal);
    r.res.teardown().await;
}

#[tokio::test]
async fn an_audit_event_for_an_existing_version_cancels_the_whole_change() {
    let r = Repos::new().await;
    let ctx = r.ctx("ten_a");
    let customer = r.customer(&ctx).await;
    let sub = r.subscription(&ctx, &customer, day(1, 1)).await;
    let inv = r.period_invoice(&sub, 0);
    r.create_invoice(&ctx, &inv).await;
    // An update that claims version 1 again in the journal (a replayed event) is refused whole.
    let stored_version = inv.version;
    let mut next = inv.clone();
    next.apply(InvoiceAction::Finalize, Utc::now()).unwrap();
    let err = r.update_invoice(&ctx, &next, stored_version, 1).await.unwrap_err();
    assert!(matches!(err, DomainError::Conflict { .. }));
    assert_eq!(r.invoices.get(&ctx.scope, &inv.id).await.unwrap().unwrap().status, InvoiceStatus::Draft);
    r.res.teardown().await;
}

#[tokio::test]
async fn every_list_access_pattern_stays_inside_its_tenant() {
    let r = Repos::new().await;
    let (a, b) = (r.ctx("ten_a"), r.ctx("ten_b"));
    let mut seen = Vec::new();
    for ctx in [&a, &b] {
        let customer = r.customer(ctx).await;
        let sub = r.subscription(ctx, &customer, day(1, 1)).await;
        let inv = r.period_invoice(&sub, 0);
        r.create_invoice(ctx, &inv).await;
        seen.push((customer, sub, inv));
    }
    let (a_customer, a_sub, a_inv) = &seen[0];
    let b_ids: Vec<String> = [&seen[1].0, &seen[1].1.id, &seen[1].2.id].iter().map(|i| i.to_string()).collect();
    let page = PageRequest::default();
    // customers and plans
    let customers = r.customers.list(&a.scope, &page).await.unwrap();
    assert_eq!(customers.data.iter().map(|c| &c.id).collect::<Vec<_>>(), vec![a_customer]);
    let plans = r.plans.list(&a.scope, &page).await.unwrap();
    assert_eq!(plans.data.len(), 1);
    assert_eq!(plans.data[0].id, a_sub.plan.id);
    // invoices: unfiltered, by customer, by status, by subscription, by period
    let filters = [
        InvoiceFilter::default(),
        InvoiceFilter { customer: Some(a_customer.clone()), ..InvoiceFilter::default() },
        InvoiceFilter { status: Some(InvoiceStatus::Draft), ..InvoiceFilter::default() },
        InvoiceFilter { subscription: Some(a_sub.id.clone()), ..InvoiceFilter::default() },
        InvoiceFilter { period_from: Some(day(1, 1)), period_to: Some(day(2, 1)), ..InvoiceFilter::default() },
    ];
    for filter in &filters {
        let got = r.invoices.list(&a.scope, filter, &page).await.unwrap();
        assert_eq!(got.data.iter().map(|i| &i.id).collect::<Vec<_>>(), vec![&a_inv.id], "{filter:?}");
    }
    // naming tenant B's customer or subscription from tenant A finds nothing
    let cross = [
        InvoiceFilter { customer: Some(seen[1].0.clone()), ..InvoiceFilter::default() },
        InvoiceFilter { subscription: Some(seen[1].1.id.clone()), ..InvoiceFilter::default() },
    ];
    for filter in &cross {
        assert!(r.invoices.list(&a.scope, filter, &page).await.unwrap().data.is_empty(), "{filter:?}");
    }
    // and gets of B's objects with A's scope miss
    assert!(r.customers.get(&a.scope, &seen[1].0).await.unwrap().is_none());
    assert!(r.subs.get(&a.scope, &seen[1].1.id).await.unwrap().is_none());
    assert!(r.invoices.get(&a.scope, &seen[1].2.id).await.unwrap().is_none());
    // the live mode of the same tenant is another scope
    let live = Scope::new(a.scope.tenant.clone(), Mode::Live);
    assert!(r.invoices.list(&live, &InvoiceFilter::default(), &page).await.unwrap().data.is_empty());
    let dump = format!("{customers:?}{plans:?}");
    assert!(b_ids.iter().all(|id| !dump.contains(id.as_str())));
    r.res.teardown().await;
}

#[tokio::test]
async fn invoice_lists_filter_by_status_and_period_and_paginate() {
    let r = Repos::new().await;
    let ctx = r.ctx("ten_a");
    let customer = r.customer(&ctx).await;
    let sub = r.subscription(&ctx, &customer, day(1, 1)).await;
    let mut ids = Vec::new();
    for index in 0..5 {
        let mut inv = r.period_invoice(&sub, index);
        r.create_invoice(&ctx, &inv).await;
        let stored_version = inv.version;
        if index % 2 == 0 {
            inv.apply(InvoiceAction::Finalize, Utc::now()).unwrap();
            r.update_invoice(&ctx, &inv, stored_version, inv.version).await.unwrap();
        }
        ids.push(inv.id.clone());
    }
    let list = |filter: InvoiceFilter, page: PageRequest| {
        let repo = r.invoices.clone();
        let scope = ctx.scope.clone();
        async move { repo.list(&scope, &filter, &page).await.unwrap() }
    };
    let pending = list(
        InvoiceFilter { status: Some(InvoiceStatus::Pending), ..InvoiceFilter::default() },
        PageRequest::default(),
    )
    .await;
    assert_eq!(
        pending.data.iter().map(|i| i.id.clone()).collect::<Vec<_>>(),
        vec![ids[4].clone(), ids[2].clone(), ids[0].clone()]
    );
    // periods starting in [1 Feb, 1 Apr): February and March
    let in_range = list(
        InvoiceFilter { period_from: Some(day(2, 1)), period_to: Some(day(4, 1)), ..InvoiceFilter::default() },
        PageRequest::default(),
    )
    .await;
    assert_eq!(in_range.data.iter().map(|i| i.id.clone()).collect::<Vec<_>>(), vec![ids[2].clone(), ids[1].clone()]);
    // customer + status combine
    let both = list(
        InvoiceFilter {
            customer: Some(customer.clone()),
            status: Some(InvoiceStatus::Draft),
            ..InvoiceFilter::default()
        },
        PageRequest::default(),
    )
    .await;
    assert_eq!(both.data.len(), 2);
    // pages of 2 through a subscription's invoices
    let first = list(
        InvoiceFilter { subscription: Some(sub.id.clone()), ..InvoiceFilter::default() },
        PageRequest { limit: 2, starting_after: None },
    )
    .await;
    assert_eq!((first.data.len(), first.has_more), (2, true));
    let cursor = Id::from_trusted(first.next_cursor.clone().unwrap());
    let second = list(
        InvoiceFilter { subscription: Some(sub.id.clone()), ..InvoiceFilter::default() },
        PageRequest { limit: 2, starting_after: Some(cursor) },
    )
    .await;
    assert_eq!(second.data.iter().map(|i| i.id.clone()).collect::<Vec<_>>(), vec![ids[2].clone(), ids[1].clone()]);
    // WHEN two pending invoices are paid
    for paid in [&ids[0], &ids[4]] {
        let mut inv = r.invoices.get(&ctx.scope, paid).await.unwrap().unwrap();
        let stored_version = inv.version;
        inv.apply(InvoiceAction::Succeed, Utc::now()).unwrap();
        r.update_invoice(&ctx, &inv, stored_version, inv.version).await.unwrap();
    }
    // THEN they are listed as paid, a page at a time, and no longer as pending
    let paid = |starting_after| {
        list(
            InvoiceFilter { status: Some(InvoiceStatus::Paid), ..InvoiceFilter::default() },
            PageRequest { limit: 1, starting_after },
        )
    };
    let first_paid = paid(None).await;
    assert_eq!((first_paid.data[0].id.clone(), first_paid.has_more), (ids[4].clone(), true));
    let second_paid = paid(first_paid.next_cursor.map(Id::from_trusted)).await;
    assert_eq!(second_paid.data.iter().map(|i| i.id.clone()).collect::<Vec<_>>(), vec![ids[0].clone()]);
    let still_pending = list(
        InvoiceFilter { status: Some(InvoiceStatus::Pending), ..InvoiceFilter::default() },
        PageRequest::default(),
    )
    .await;
    assert_eq!(still_pending.data.iter().map(|i| i.id.clone()).collect::<Vec<_>>(), vec![ids[2].clone()]);
    // AND a paid invoice has left the status index rather than moved in it
    let pk = billy_aws::dynamo::entity_pk(&ctx.scope, &ids[0]);
    let stored = billy_e2e::stored_item(&r.res.aws, &r.res.tables().main, &pk, "#").await;
    assert!(!stored.unwrap().contains_key("GSI4PK"));
    r.res.teardown().await;
}

#[tokio::test]
async fn due_subscriptions_are_found_across_shards_and_leave_the_index_when_canceled() {
    let r = Repos::new().await;
    let (a, b) = (r.ctx("ten_a"), r.ctx("ten_b"));
    let mut due = Vec::new();
    for ctx in [&a, &b, &a, &b, &a, &b] {
        let customer = r.customer(ctx).await;
        due.push((ctx.scope.clone(), r.subscription(ctx, &customer, day(3, 1)).await));
    }
    let later_customer = r.customer(&a).await;
    let later = r.subscription(&a, &later_customer, day(5, 1)).await;
    let sweep = |before: DateTime<Utc>| {
        let subs = r.subs.clone();
        async move {
            let mut all = Vec::new();
            for shard in 0..SHARDS {
                all.extend(subs.due(shard, before, 100).await.unwrap());
            }
            all.sort();
            all
        }
    };
    // WHEN the sweep runs on 1 March THEN exactly the six started then are due, with their scopes
    let mut expected: Vec<(Scope, Id)> = due.iter().map(|(s, sub)| (s.clone(), sub.id.clone())).collect();
    expected.sort();
    assert_eq!(sweep(day(3, 1)).await, expected);
    assert!(sweep(day(2, 28)).await.is_empty());
    assert!(sweep(day(5, 1)).await.contains(&(a.scope.clone(), later.id.clone())));
    // AND a canceled subscription is no longer due
    let (scope, mut sub) = due[0].clone();
    sub.cancel(false, day(2, 1)).unwrap();
    let sub_ctx = r.ctx(scope.tenant.as_str());
    let event = r.event(&sub_ctx, &sub.id, "subscription", sub.version, &sub);
    r.commit(&sub_ctx, Write::Subscription { subscription: sub.clone(), expected: Some(1) }, event).await.unwrap();
    assert!(!sweep(day(3, 1)).await.contains(&(scope, sub.id)));
    r.res.teardown().await;
}

#[tokio::test]
async fn idempotency_keys_process_once_replay_and_refuse_mismatches() {
    let r = Repos::new().await;
    let store = DynamoIdempotency::new(r.aws().dynamodb.clone(), r.res.tables());
    let scope = r.ctx("ten_a").scope;
    let now = Utc::now();
    let now = chrono::DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap();
    let process = |first_seen| IdempotencyDecision::Process { first_seen };
    assert_eq!(store.begin(&scope, "k1", "h1", now).await.unwrap(), process(now));
    assert_eq!(store.begin(&scope, "k1", "h1", now).await.unwrap(), IdempotencyDecision::InFlight);
    assert_eq!(store.begin(&scope, "k1", "h2", now).await.unwrap(), IdempotencyDecision::Mismatch);
    store.complete(&scope, "k1", 201, r#"{"id":"cus_1"}"#).await.unwrap();
    assert_eq!(
        store.begin(&scope, "k1", "h1", now).await.unwrap(),
        IdempotencyDecision::Replay { status: 201, body: r#"{"id":"cus_1"}"#.into() }
    );
    // the same key in another scope is another key
    let other = r.ctx("ten_b").scope;
    assert_eq!(store.begin(&other, "k1", "h2", now).await.unwrap(), process(now));
    // a released key (its request failed) can be processed again with the same body, and keeps
    // the time it was first seen: a retry names what it creates as the first try did
    store.abandon(&other, "k1").await.unwrap();
    let later = now + Duration::seconds(5);
    assert_eq!(store.begin(&other, "k1", "h3", later).await.unwrap(), IdempotencyDecision::Mismatch);
    assert_eq!(store.begin(&other, "k1", "h2", later).await.unwrap(), process(now));
    // a crashed one is taken over after its lock expires, with its first-seen time too
    assert_eq!(store.begin(&other, "k1", "h2", later + Duration::seconds(61)).await.unwrap(), process(now));
    // and a key past its retention is free for a new request
    let expired = now + Duration::hours(49);
    let expired = chrono::DateTime::from_timestamp_millis(expired.timestamp_millis()).unwrap();
    assert_eq!(store.begin(&scope, "k1", "h9", expired).await.unwrap(), process(expired));
    r.res.teardown().await;
}

#[tokio::test]
async fn a_duplicate_customer_insert_is_a_conflict_with_no_second_event() {
    let r = Repos::new().await;
    let ctx = r.ctx("ten_a");
    let id = r.customer(&ctx).await;
    let existing = r.customers.get(&ctx.scope, &id).await.unwrap().unwrap();
    let mut copy = existing.clone();
    copy.name = Some("overwrite?".into());
    let event = r.event(&ctx, &id, "customer", 2, &copy);
    let err = r.commit(&ctx, Write::Customer { customer: copy, expected: None }, event).await.unwrap_err();
    assert!(matches!(err, DomainError::Conflict { .. }));
    assert_eq!(r.customers.get(&ctx.scope, &id).await.unwrap().unwrap(), existing);
    assert_eq!(r.audit.for_entity(&ctx.scope, &id).await.unwrap().len(), 1);
    r.res.teardown().await;
}

fn new_customer(ids: &RandomIds<SystemClock>) -> Customer {
    Customer {
        id: ids.next(IdKind::Customer),
        created: Utc::now(),
        name: Some("c".into()),
        email: None,
        description: None,
        metadata: Default::default(),
        test_clock: None,
        default_payment_method: None,
        default_payout_destination: None,
        livemode: false,
        version: 1,
    }
}

/// A unit of work whose DynamoDB requests are counted.
async fn metered_unit(r: &Repos) -> (DynamoUnitOfWork, billy_aws::metering::RequestMeter) {
    let meter = billy_aws::metering::RequestMeter::default();
    let metered = AwsClients::local_metered(&billy_aws::LocalEndpoints::from_env(), Some(meter.clone())).await;
    (DynamoUnitOfWork::new(metered.dynamodb.clone(), r.res.tables()), meter)
}

fn transactions_sent(meter: &billy_aws::metering::RequestMeter) -> u64 {
    meter.snapshot().requests.get(&("DynamoDB".into(), "TransactWriteItems".into())).copied().unwrap_or(0)
}

#[tokio::test]
async fn changesets_committed_together_stand_or_fall_alone() {
    let r = Repos::new().await;
    let (unit, meter) = metered_unit(&r).await;
    let (ctx, other) = (r.ctx("ten_a"), r.ctx("ten_b"));
    // GIVEN an existing customer, and five changes committed together: a new customer, a stale
    // update of the existing one, a new customer of another tenant, a second creation of the first
    // new customer (same item), and one more new customer
    let existing_id = r.customer(&ctx).await;
    let existing = r.customers.get(&ctx.scope, &existing_id).await.unwrap().unwrap();
    let change = |ctx: &Context, customer: Customer, expected: Option<u64>, version: u64| Changeset {
        scope: ctx.scope.clone(),
        events: vec![r.event(ctx, &customer.id, "customer", version, &customer)],
        writes: vec![Write::Customer { customer, expected }],
    };
    let (a, b, d) = (new_customer(&r.ids), new_customer(&r.ids), new_customer(&r.ids));
    let mut stale = existing.clone();
    stale.name = Some("stale".into());
    stale.version = 3;
    let mut a_again = a.clone();
    a_again.name = Some("second".into());
    let changes = vec![
        change(&ctx, a.clone(), None, 1),
        change(&ctx, stale, Some(2), 3),
        change(&other, b.clone(), None, 1),
        change(&ctx, a_again, None, 1),
        change(&ctx, d.clone(), None, 1),
    ];
    // WHEN they are committed with commit_each
    let results = unit.commit_each(changes).await;
    // THEN the stale update and the second creation are conflicts, the others are stored, each with
    // exactly its own audit event, and the existing customer and its journal are untouched
    let outcome: Vec<&str> = results
        .iter()
        .map(|r| match r {
            Ok(()) => "ok",
            Err(DomainError::Conflict { .. }) => "conflict",
            Err(_) => "error",
        })
        .collect();
    assert_eq!(outcome, vec!["ok", "conflict", "ok", "conflict", "ok"]);
    assert_eq!(r.customers.get(&ctx.scope, &a.id).await.unwrap().unwrap().name.as_deref(), Some("c"));
    assert!(r.customers.get(&other.scope, &b.id).await.unwrap().is_some());
    assert!(r.customers.get(&ctx.scope, &b.id).await.unwrap().is_none(), "each change keeps its own tenant");
    assert!(r.customers.get(&ctx.scope, &d.id).await.unwrap().is_some());
    assert_eq!(r.customers.get(&ctx.scope, &existing_id).await.unwrap().unwrap(), existing);
    assert_eq!(r.audit.for_entity(&ctx.scope, &existing_id).await.unwrap().len(), 1);
    assert_eq!(r.audit.for_entity(&ctx.scope, &a.id).await.unwrap().len(), 1);
    assert_eq!(r.audit.for_entity(&other.scope, &b.id).await.unwrap().len(), 1);
    // and the cancelled pack named its failed item, so only the innocent three went again together
    // (the pack, its retry, then the second creation of `a`, which waited for `a`): 3 transactions
    assert_eq!(transactions_sent(&meter), 3);
    r.res.teardown().await;
}

#[tokio::test]
async fn many_changesets_are_packed_into_few_transactions() {
    let r = Repos::new().await;
    let ctx = r.ctx("ten_a");
    let (unit, meter) = metered_unit(&r).await;
    // GIVEN 120 new customers, two items each (the customer and its audit event)
    let customers: Vec<Customer> = (0..120).map(|_| new_customer(&r.ids)).collect();
    let changes: Vec<Changeset> = customers
        .iter()
        .map(|c| Changeset {
            scope: ctx.scope.clone(),
            events: vec![r.event(&ctx, &c.id, "customer", 1, c)],
            writes: vec![Write::Customer { customer: c.clone(), expected: None }],
        })
        .collect();
    // WHEN they are committed together
    let results = unit.commit_each(changes).await;
    // THEN all are stored, in 100-item transactions: 3 requests, not 120
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let keys: Vec<(Scope, Id)> = customers.iter().map(|c| (ctx.scope.clone(), c.id.clone())).collect();
    assert_eq!(r.customers.get_many(&keys).await.unwrap().len(), 120);
    assert_eq!(transactions_sent(&meter), 3);
    r.res.teardown().await;
}

#[tokio::test]
async fn a_key_found_is_trusted_for_the_caches_lifetime_and_a_removed_key_stops_working_after_it() {
    let res = TestResources::provision().await;
    let (ddb, tables) = (res.aws.dynamodb.clone(), res.tables());
    let ttl = std::time::Duration::from_secs(30);
    let clock = std::sync::Arc::new(billy_core::clock::FixedClock::new(Utc::now()));
    let tenants = billy_aws::tenants::DynamoTenants::with_key_ttl(ddb.clone(), tables.clone(), ttl, clock.clone());
    let ids = RandomIds::new(SystemClock);
    // GIVEN a tenant whose test key has just authenticated once
    let created = billy_core::tenant::create_tenant(&tenants, &SystemClock, &ids, None, "Cached").await.unwrap();
    let key = created.test_key.expose();
    let first = billy_core::tenant::authenticate(&tenants, key, None).await.unwrap();
    assert_eq!(first.scope.tenant, created.tenant.id);
    // WHEN an operator removes the key
    let hash = billy_core::tenant::ApiKeySecret::parse(key).unwrap().hash();
    ddb.delete_item()
        .table_name(&tables.main)
        .key("PK", aws_sdk_dynamodb::types::AttributeValue::S(format!("APIKEY#{}", hash.0)))
        .key("SK", aws_sdk_dynamodb::types::AttributeValue::S("#".into()))
        .send()
        .await
        .unwrap();
    // THEN the warm function still accepts it within the cache's lifetime, without a read
    assert!(billy_core::tenant::authenticate(&tenants, key, None).await.is_ok());
    // AND refuses it once that lifetime has passed, as a function that never saw it does at once
    clock.set(billy_core::clock::Clock::now(&clock) + Duration::seconds(30));
    let err = billy_core::tenant::authenticate(&tenants, key, None).await.unwrap_err();
    assert!(matches!(err, DomainError::Unauthenticated(_)), "{err:?}");
    let fresh = billy_aws::tenants::DynamoTenants::new(ddb, tables);
    assert!(billy_core::tenant::authenticate(&fresh, created.live_key.expose(), None).await.is_ok());
    assert!(billy_core::tenant::authenticate(&fresh, key, None).await.is_err());
    res.teardown().await;
}

/// `n` tallies of one tenant's invoices: the i-th adds i + 1 to a day's `collected` and one
/// invoice paid, each under its own invoice's version 1.
fn invoice_tallies(ids: &RandomIds<SystemClock>, scope: &Scope, n: usize) -> Vec<Tally> {
    let usd = Currency::parse("usd", "currency").unwrap();
    let bucket = Bucket::Revenue { day: day(3, 10).date_naive(), currency: usd };
    (0..n)
        .map(|i| {
            let counters =
                Counters::from([(Counter::Collected, i64::try_from(i).unwrap() + 1), (Counter::InvoicesPaid, 1)]);
            Tally {
                event: ids.next(IdKind::Event),
                scope: scope.clone(),
                guard: Guard::Version { entity: ids.next(IdKind::Invoice), version: 1 },
                changes: [(bucket.clone(), counters)].into(),
                renewal: None,
                replaces: None,
            }
        })
        .collect()
}

/// A deadline a batch meets only if something hangs.
fn later() -> Instant {
    Instant::now() + std::time::Duration::from_secs(60)
}

/// The day's `collected` and invoices paid, as the reports read them.
async fn counted(reports: &DynamoReports, scope: &Scope) -> (i64, i64) {
    let found =
        billy_core::ports::ReportRepository::buckets(reports, scope, Bucket::REVENUE, "2026-03-10", "2026-03-10")
            .await
            .unwrap();
    let get = |c| found.iter().map(|(_, counters)| counters.get(&c).copied().unwrap_or(0)).sum();
    (get(Counter::Collected), get(Counter::InvoicesPaid))
}

#[tokio::test]
async fn a_shards_events_are_counted_once_through_its_checkpoint_even_after_a_version_that_guarded_each_invoice() {
    // GIVEN a report store and twenty events of one tenant's invoices on one stream shard, the
    // first five counted by a version that guarded each invoice (and left the shard with no
    // checkpoint), as a deployment finds them when a batch was cut short under the old version
    let res = TestResources::provision().await;
    let reports = DynamoReports::new(res.aws.dynamodb.clone(), res.provisioned.tables["ReportTable"].clone());
    let ids = RandomIds::new(SystemClock);
    let scope = Scope::new(ids.next(IdKind::Tenant), Mode::Test);
    let tallies = invoice_tallies(&ids, &scope, 20);
    // (two events to a journal item, whose sequence numbers grow in length: 5, 25, …, 9765625)
    let placed: Vec<Placed> = tallies
        .iter()
        .enumerate()
        .map(|(i, t)| Placed {
            tally: t.clone(),
            position: position(&5u64.pow(1 + u32::try_from(i / 2).unwrap()).to_string(), i % 2),
        })
        .collect();
    assert_eq!(record(&reports, &tallies[..5]).await.unwrap(), 5);
    let shard = "arn:aws:dynamodb:local:000000000000:table/audit/stream/2026-03-10T00:00:00.000#shardId-1";

    // WHEN the shard's first twelve are delivered, twice at once
    let (a, b) = tokio::join!(
        record_in_order(&reports, shard, &placed[..12], later()),
        record_in_order(&reports, shard, &placed[..12], later())
    );
    // THEN the seven the old version did not count are counted, once
    assert_eq!(a.unwrap() + b.unwrap(), 7);
    assert_eq!(counted(&reports, &scope).await, ((1..=12).sum(), 12));

    // WHEN they are delivered again, whole, from the middle (of an item, too), or one alone, and
    // the next eight arrive twice at once with some of those
    for slice in [&placed[..12], &placed[6..12], &placed[7..12], &placed[11..12], &placed[..1]] {
        assert_eq!(record_in_order(&reports, shard, slice, later()).await.unwrap(), 0, "counted before");
    }
    let (a, b) = tokio::join!(
        record_in_order(&reports, shard, &placed[9..], later()),
        record_in_order(&reports, shard, &placed[12..], later())
    );
    // THEN every event is counted exactly once
    assert_eq!(a.unwrap() + b.unwrap(), 8);
    assert_eq!(counted(&reports, &scope).await, ((1..=20).sum(), 20));

    // AND a batch whose time is up begins no chunk: it stops at its first event not counted
    let late = invoice_tallies(&ids, &scope, 1);
    let late = Placed { tally: late[0].clone(), position: position("99999999999", 0) };
    let stopped = record_in_order(&reports, shard, &[placed[19].clone(), late], Instant::now()).await.unwrap_err();
    assert_eq!(stopped.at, 1, "{:?}", stopped.error);
    assert_eq!(counted(&reports, &scope).await, ((1..=20).sum(), 20));

    // AND another shard keeps its own checkpoint: its events count though their positions sort
    // before this shard's
    let other = invoice_tallies(&ids, &scope, 2);
    let early: Vec<Placed> =
        other.into_iter().enumerate().map(|(i, tally)| Placed { tally, position: position("7", i) }).collect();
    assert_eq!(record_in_order(&reports, &format!("{shard}-2"), &early, later()).await.unwrap(), 2);
    assert_eq!(counted(&reports, &scope).await, ((1..=20).sum::<i64>() + 3, 22));
    res.teardown().await;
}
