//! A step that fails for a passing reason (a store call that timed out, say) on any of Billy's
//! queues: its message comes back within seconds, not after the queue's visibility timeout of
//! minutes, and is then handled once, with nothing lost or done twice.

use super::webhooks::{Receiver, body};
use super::{World, finished_export, s};
use billy_e2e::TestStack;
use billy_local::testing::FailFirstStoreCall;
use reqwest::StatusCode;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Every function that consumes a queue.
const CONSUMERS: [&str; 6] =
    ["generate-invoice", "charge-invoice", "webhook-processor", "deliver-webhooks", "pay-out", "export-transactions"];

/// Well under the shortest visibility timeout of the queues (181 s): a step retried only after
/// that timeout cannot meet it. Four retries in a row took 23 s here; the rest is room for a busy
/// machine. (That each consumer really shortened it, `make test`'s least privilege check shows:
/// each one's `sqs:ChangeMessageVisibility` grant must be seen used.)
const WITHIN: Duration = Duration::from_secs(90);

#[tokio::test]
async fn a_step_that_fails_once_for_a_passing_reason_is_tried_again_within_seconds_on_every_queue() {
    // GIVEN a stack on which each queue consumer's first store call goes unanswered
    let faults: BTreeMap<&str, FailFirstStoreCall> =
        CONSUMERS.iter().map(|name| (*name, FailFirstStoreCall::default())).collect();
    let template = billy_local::Template::load(&billy_local::default_template_path()).unwrap();
    let wiring = faults.clone();
    let stack = TestStack::start_with(&template, move |def, config, aws| {
        // (Over the function's own clients, so what it does is still recorded.)
        let aws = match wiring.get(def.name.as_str()) {
            Some(fault) => aws.with_interceptor(fault.interceptor()),
            None => aws.clone(),
        };
        billy_local::functions::build(&def.name, config, &aws)
    })
    .await;
    let w = World::on(stack, "2026-06-01T00:00:00Z", "4242424242424242").await;
    let receiver = Receiver::start(200).await;
    w.endpoint(&receiver.url, &["invoice.paid"]).await;

    // WHEN a subscription is billed at once: its bill, its charge, the gateway's webhook and the
    // announcement to the endpoint each fail once
    let started = Instant::now();
    let plan = w.plan(2000).await;
    let sub = w.subscribe(&plan).await;
    let hits = loop {
        let hits = receiver.hits();
        if !hits.is_empty() {
            break hits;
        }
        assert!(started.elapsed() < WITHIN, "not announced within {WITHIN:?}: four steps each retried once");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // THEN the invoice is paid and announced within seconds of each other step
    let invoices = w.invoices(&sub).await;
    assert_eq!(invoices.len(), 1, "one invoice for the period");
    assert_eq!(invoices[0]["status"], "paid");
    assert_eq!(body(&hits[0])["data"]["object"]["id"], invoices[0]["id"], "the paid invoice is the one announced");

    // WHEN a weekly payout's first week ends, its payout failing once
    w.add_destination("000123456789").await;
    let payroll = w.payout_plan(50_000, "weekly").await;
    let payee = w.subscribe(&payroll).await;
    w.settled().await;
    let started = Instant::now();
    w.advance("2026-06-08T01:00:00Z").await;
    let payouts = w.invoices(&payee).await;
    assert_eq!(payouts.len(), 1, "one payout for the week");
    w.invoice_becomes(&s(&payouts[0]["id"]), "paid_out").await;
    let paid_out = started.elapsed();
    assert!(paid_out < WITHIN, "a payout retried once took {paid_out:?}");

    // WHEN an export of the ledger runs, failing once
    let started = Instant::now();
    let (status, export) = w.api.post("/exports", &w.key, &json!({"type": "transactions"})).await;
    assert_eq!(status, StatusCode::CREATED, "{export}");
    let (done, exported) = finished_export(&w, &export).await;
    let finished = started.elapsed();
    assert!(finished < WITHIN, "an export retried once took {finished:?}");
    // THEN it holds the charge and the payout, once each
    assert_eq!((done["rows"].as_u64(), exported.len()), (Some(2), 2), "{done}");

    // AND every consumer failed once, and nothing was done twice: one gateway charge, one payout,
    // one delivery, and every queue and dead-letter queue empty
    for (name, fault) in &faults {
        assert!(fault.fired(), "{name} never met its failure");
    }
    assert_eq!(w.stack.sandbox.movements(), 2, "one charge and one payout at the gateway");
    w.queues_drained(&[
        "BillQueue",
        "ChargeQueue",
        "PayoutQueue",
        "WebhookQueue",
        "DeliveryQueue",
        "ExportQueue",
        "BillDLQ",
        "ChargeDLQ",
        "PayoutDLQ",
        "WebhookDLQ",
        "DeliveryDLQ",
        "ExportDLQ",
    ])
    .await;
    assert_eq!(receiver.hits().len(), 1, "the endpoint got the announcement once");
    w.stack.stop().await;
}
