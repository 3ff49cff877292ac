//! The verification job at scale: a live-mode month of invoices (each created, finalized and paid,
//! with its three audit events, as the pipeline writes them) seeded straight into fresh tables, a
//! few of them then changed in storage behind Billy's back, and the month verified by the job's
//! own use case. Reports the time, the rate, and that exactly the changed invoices were reported.

use billy_core::audit::{Actor, Change, Context};
use billy_core::ids::{Id, IdKind, RandomIds};
use billy_core::invoice::{Invoice, InvoiceAction, InvoiceItem};
use billy_core::journal::{self, InvoiceChange};
use billy_core::ports::{Changeset, Write};
use billy_core::settlement::Month;
use billy_core::tenant::{Mode, Scope};
use billy_local::testing::TestResources;
use chrono::{DateTime, Duration, Utc};
use futures::stream::{self, StreamExt};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Instant;

/// Invoices changed in storage after seeding: the run must report exactly these.
const TAMPERED: usize = 3;

fn event(
    ctx: &Context,
    ids: &RandomIds<billy_core::clock::SystemClock>,
    at: DateTime<Utc>,
    inv: &Invoice,
    action: &'static str,
    change: &InvoiceChange,
) -> billy_core::audit::AuditEvent {
    ctx.record(
        ids,
        at,
        Change {
            entity: &inv.id,
            entity_type: "invoice",
            account: Some(&inv.customer),
            action,
            version: inv.version,
            reason: None,
            before: None,
            after: Some(inv),
            change: serde_json::to_value(change).ok(),
        },
    )
}

/// One paid invoice of the month, with its journal, as one unit of work.
fn paid_invoice(
    ctx: &Context,
    ids: &RandomIds<billy_core::clock::SystemClock>,
    at: DateTime<Utc>,
    i: usize,
) -> Changeset {
    let customer = Id::derived(IdKind::Customer, at, &format!("cus{}", i % 500));
    let mut inv = Invoice::draft(
        Id::derived(IdKind::Invoice, at, &format!("inv{i}")),
        customer,
        None,
        billy_core::plan::Direction::Debit,
        billy_core::money::Currency::parse("usd", "c").expect("usd"),
        None,
        at,
        true,
    )
    .with_items(vec![InvoiceItem::new("Seat licence", 1, 1999 + i64::try_from(i % 7).unwrap_or(0)).expect("item")])
    .expect("items");
    inv.version = 1;
    let created = InvoiceChange::Created { invoice: Box::new(inv.clone()) };
    let mut events = vec![event(ctx, ids, at, &inv, "invoice.created", &created)];
    let finalized = journal::transition(&mut inv, InvoiceAction::Finalize, at).expect("finalize");
    events.push(event(ctx, ids, at, &inv, "invoice.finalized", &finalized));
    let paid_at = at + Duration::seconds(2);
    let paid = journal::transition(&mut inv, InvoiceAction::Succeed, paid_at).expect("succeed");
    events.push(event(ctx, ids, paid_at, &inv, "invoice.paid", &paid));
    Changeset { scope: ctx.scope.clone(), writes: vec![Write::Invoice { invoice: inv, expected: None }], events }
}

pub async fn measure(invoices: usize) -> Value {
    let res = TestResources::provision().await;
    let p = &res.provisioned;
    let (main, audit, bus) =
        (p.tables["BillyTable"].clone(), p.tables["AuditTable"].clone(), p.buses["BillyEventBus"].clone());
    let scope = Scope::new(Id::derived(IdKind::Tenant, Utc::now(), "bench-verify"), Mode::Live);
    let ctx = Context::new(scope.clone(), Actor::System { function: "bench".into() }, None);
    let ids = RandomIds::new(billy_core::clock::SystemClock);
    // Last month, spread over its days.
    let month = Month::of(Month::of(Utc::now()).start() - Duration::days(1));
    let span = (month.next().start() - month.start()).num_seconds() - 60;
    let step = span / i64::try_from(invoices.max(1)).unwrap_or(1);
    // Seeded with plain batch writes (the items the pipeline's transactions write), which DynamoDB
    // Local takes several times faster than 100-item transactions.
    let seeding = Instant::now();
    let mut items: Vec<(String, billy_aws::dynamo::Item)> = Vec::with_capacity(invoices * 4);
    for i in 0..invoices {
        let at = month.start() + Duration::seconds(step * i64::try_from(i).unwrap_or(0));
        let change = paid_invoice(&ctx, &ids, at, i);
        for write in &change.writes {
            if let Write::Invoice { invoice, .. } = write {
                items.push((main.clone(), billy_aws::items::invoice(&scope, invoice).expect("item")));
            }
        }
        for item in billy_aws::dynamo::audit_items(&change.events).expect("audit items") {
            items.push((audit.clone(), item));
        }
    }
    let batches: Vec<Vec<(String, billy_aws::dynamo::Item)>> = items.chunks(25).map(<[_]>::to_vec).collect();
    stream::iter(batches)
        .for_each_concurrent(4, |batch| {
            let ddb = res.aws.dynamodb.clone();
            async move {
                let mut pending: std::collections::HashMap<String, Vec<aws_sdk_dynamodb::types::WriteRequest>> =
                    std::collections::HashMap::new();
                for (table, item) in batch {
                    let put = aws_sdk_dynamodb::types::PutRequest::builder().set_item(Some(item)).build().expect("put");
                    pending
                        .entry(table)
                        .or_default()
                        .push(aws_sdk_dynamodb::types::WriteRequest::builder().put_request(put).build());
                }
                while !pending.is_empty() {
                    let out = ddb.batch_write_item().set_request_items(Some(pending)).send().await.expect("seeded");
                    pending =
                        out.unprocessed_items.unwrap_or_default().into_iter().filter(|(_, v)| !v.is_empty()).collect();
                }
            }
        })
        .await;
    let seeded_s = seeding.elapsed().as_secs_f64();
    // A few invoices changed behind Billy's back.
    let mut tampered = Vec::new();
    for k in 0..TAMPERED.min(invoices) {
        let i = k * (invoices / TAMPERED.max(1)).max(1);
        let at = month.start() + Duration::seconds(step * i64::try_from(i).unwrap_or(0));
        let id = Id::derived(IdKind::Invoice, at, &format!("inv{i}"));
        res.aws
            .dynamodb
            .update_item()
            .table_name(&main)
            .key("PK", aws_sdk_dynamodb::types::AttributeValue::S(billy_aws::dynamo::entity_pk(&scope, &id)))
            .key("SK", aws_sdk_dynamodb::types::AttributeValue::S(billy_aws::dynamo::ENTITY_SK.to_owned()))
            .update_expression("SET #t = :t")
            .expression_attribute_names("#t", "total")
            .expression_attribute_values(":t", aws_sdk_dynamodb::types::AttributeValue::N("1".into()))
            .send()
            .await
            .expect("tampered");
        tampered.push(id.to_string());
    }
    let config = billy_lambda::Config::from_map(BTreeMap::from([
        ("BILLY_TABLE".to_owned(), main.clone()),
        ("BILLY_AUDIT_TABLE".to_owned(), audit.clone()),
        ("BILLY_EVENT_BUS".to_owned(), bus.clone()),
    ]));
    let d = billy_lambda::deps::Deps::new(&config, &res.aws).expect("deps");
    let ports = d.ports();
    let requested = billy_core::billing::request_verification(&ports, &ctx, month, "api").await.expect("requested");
    let started = Instant::now();
    let v = billy_core::billing::run_verification(&ports, &scope, &requested.id).await.expect("verified");
    let seconds = started.elapsed().as_secs_f64();
    let mut found: Vec<String> = v.mismatches.iter().map(|m| m.entity.clone()).collect();
    found.sort();
    tampered.sort();
    assert_eq!(v.invoices_checked, invoices as u64, "every invoice of the month was checked");
    assert_eq!(found, tampered, "exactly the changed invoices are reported");
    res.teardown().await;
    json!({
        "invoices": invoices, "seeding_s": (seeded_s * 100.0).round() / 100.0,
        "verify_s": (seconds * 100.0).round() / 100.0,
        "invoices_per_s": (invoices as f64 / seconds).round(),
        "mismatches_found": v.mismatch_count, "mismatches_planted": tampered.len(),
    })
}
