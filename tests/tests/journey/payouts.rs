//! Paying people: payout destinations (tokenised and masked, one default, never a card), payout
//! plans paid at each period's end through the payout pipeline's own queue and function, a
//! permanent failure that is never retried, and a transient one retried per the payout policy.

use super::{World, s};
use billy_e2e::{TestStack, error_code};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

impl World {
    /// A customer's bank account to pay out to (a sandbox test number, test mode).
    pub(super) async fn add_destination(&self, account: &str) -> Value {
        let body = json!({"type": "bank_account", "bank_account": {"account_number": account}});
        let (status, pd) =
            self.api.post(&format!("/customers/{}/payout_destinations", self.customer), &self.key, &body).await;
        assert_eq!(status, StatusCode::CREATED, "{pd}");
        pd
    }

    pub(super) async fn payout_plan(&self, amount: i64, frequency: &str) -> String {
        let body = json!({"name": "Payroll", "amount": amount, "currency": "usd", "frequency": frequency, "kind": "fixed_payout"});
        let (status, plan) = self.api.post("/plans", &self.key, &body).await;
        assert_eq!(status, StatusCode::CREATED, "{plan}");
        s(&plan["id"])
    }
}

#[tokio::test]
async fn a_weekly_payroll_is_paid_out_at_the_end_of_each_of_five_weeks_to_a_masked_default_destination() {
    // GIVEN a customer with a bank account to be paid to (and no card)
    let w = World::bare(TestStack::start().await, "2026-06-01T00:00:00Z").await;
    let pd = w.add_destination("000123456789").await;
    // THEN it is kept masked, is the customer's default, and its number is nowhere to be read
    assert_eq!(
        (pd["object"].as_str(), pd["bank_account"]["last4"].as_str()),
        (Some("payout_destination"), Some("6789"))
    );
    assert!(s(&pd["id"]).starts_with("pd_"));
    let (_, customer) = w.api.get(&format!("/customers/{}", w.customer), &w.key).await;
    assert_eq!(customer["default_payout_destination"], pd["id"]);
    assert!(customer["default_payment_method"].is_null(), "a destination is not a payment method");
    let (_, history) = w.api.get(&format!("/customers/{}/history", w.customer), &w.key).await;
    let (_, trail) = w.api.get(&format!("/audit?entity={}", s(&pd["id"])), &w.key).await;
    for shown in [pd.to_string(), history.to_string(), trail.to_string()] {
        assert!(!shown.contains("000123456789"), "the full account number leaked: {shown}");
    }
    // AND a card cannot be paid out to: a clear 400, and nothing is added
    let card = json!({"type": "card", "card": {"number": "4242424242424242"}});
    let (status, err) = w.api.post(&format!("/customers/{}/payout_destinations", w.customer), &w.key, &card).await;
    assert_eq!((status, error_code(&err).as_str()), (StatusCode::BAD_REQUEST, "destination_invalid"), "{err}");
    let (_, listed) = w.api.get(&format!("/customers/{}/payout_destinations", w.customer), &w.key).await;
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1), "{listed}");
    // WHEN a weekly payroll of 500.00 runs for five weeks as the clock advances
    let plan = w.payout_plan(50_000, "weekly").await;
    let sub = w.subscribe(&plan).await;
    w.settled().await;
    assert!(w.invoices(&sub).await.is_empty(), "a payout is paid at its period's end, not its start");
    for week in 1..=5 {
        w.advance(&format!("2026-{}T01:00:00Z", ["06-08", "06-15", "06-22", "06-29", "07-06"][week - 1])).await;
        let invoices = w.invoices(&sub).await;
        assert_eq!(invoices.len(), week, "one payout per week that ended");
        w.invoice_becomes(&s(&invoices[week - 1]["id"]), "paid_out").await;
    }
    // THEN five payouts of 500.00, one per 7-day period, each one payout transaction that succeeded
    let invoices = w.invoices(&sub).await;
    let starts: Vec<String> = invoices.iter().map(|i| s(&i["period_start"])[..10].to_owned()).collect();
    assert_eq!(starts, ["2026-06-01", "2026-06-08", "2026-06-15", "2026-06-22", "2026-06-29"]);
    for inv in &invoices {
        assert_eq!((inv["status"].as_str(), inv["total"].as_i64()), (Some("paid_out"), Some(50_000)), "{inv}");
        let txns = w.transactions_of(&s(&inv["id"])).await;
        let kinds: Vec<(String, String)> = txns.iter().map(|t| (s(&t["type"]), s(&t["status"]))).collect();
        assert_eq!(kinds, [("payout".to_owned(), "succeeded".to_owned())]);
        assert!(w.trail(&s(&inv["id"])).await.contains(&"payout.paid".to_owned()));
    }
    assert_eq!(w.stack.sandbox.movements(), 5, "one gateway payout per week");
    // AND June's four payouts (weeks ending in June) replay from the journal exactly
    let verified = w.verify("2026-06").await;
    assert_eq!(
        (verified["status"].as_str(), verified["invoices_checked"].as_u64()),
        (Some("succeeded"), Some(4)),
        "{verified}"
    );
    // AND every payout went through the payout pipeline: nothing is left on either queue
    w.queues_drained(&["ChargeQueue", "PayoutQueue", "ChargeDLQ", "PayoutDLQ"]).await;
    w.stack.stop().await;
}

#[tokio::test]
async fn a_closed_account_fails_at_once_and_is_never_retried() {
    // GIVEN a monthly payout to an account that was closed
    let w = World::bare(TestStack::start().await, "2026-06-01T00:00:00Z").await;
    w.add_destination("000111111116").await;
    let sub = w.subscribe(&w.payout_plan(20_000, "monthly").await).await;
    // WHEN June ends
    w.advance("2026-07-01T01:00:00Z").await;
    let inv = w.invoice_becomes(&s(&w.invoices(&sub).await[0]["id"]), "payout_failed").await;
    // THEN the payout failed for good after one attempt: no retry is scheduled
    assert_eq!(inv["failure_reason"], "account_closed");
    assert_eq!(inv["attempt_count"], 1);
    assert!(inv["next_attempt_at"].is_null(), "{inv}");
    // AND however far the clock goes past the retry policy's days, nothing is sent again
    w.advance("2026-07-09T01:00:00Z").await;
    let inv = w.invoice(&s(&inv["id"])).await;
    assert_eq!((inv["status"].as_str(), inv["attempt_count"].as_i64()), (Some("payout_failed"), Some(1)), "{inv}");
    assert_eq!(w.transactions_of(&s(&inv["id"])).await.len(), 1);
    assert_eq!(w.stack.sandbox.movements(), 1);
    // AND the payroll itself goes on (a payout failure is not a debt of the customer's)
    assert_eq!(w.subscription(&sub).await["status"], "active");
    // WHEN the customer gives a good account and the tenant asks for one more attempt
    let good = w.add_destination("000123456789").await;
    let path = format!("/customers/{}/payout_destinations/{}/default", w.customer, s(&good["id"]));
    let (status, customer) = w.api.post(&path, &w.key, &json!({})).await;
    assert_eq!((status, customer["default_payout_destination"].clone()), (StatusCode::OK, good["id"].clone()));
    let (status, retried) = w.api.post(&format!("/invoices/{}/charge", s(&inv["id"])), &w.key, &json!({})).await;
    assert_eq!(
        (status, retried["next_attempt_at"].as_str()),
        (StatusCode::OK, Some("2026-07-09T01:00:00Z")),
        "{retried}"
    );
    // THEN the owed payout goes out to the new account, as a second attempt
    let paid = w.invoice_becomes(&s(&inv["id"]), "paid_out").await;
    assert_eq!(paid["attempt_count"], 2);
    assert_eq!(w.stack.sandbox.movements(), 2);
    // AND a second request while none is due is refused and changes nothing
    let (status, err) = w.api.post(&format!("/invoices/{}/charge", s(&inv["id"])), &w.key, &json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    w.stack.stop().await;
}

#[tokio::test]
async fn a_request_on_the_other_pipelines_queue_is_handed_over_to_its_own_and_moves_no_money_twice() {
    use billy_core::billing::ChargeRequest;
    use billy_core::plan::Direction;
    // GIVEN a customer who pays a subscription and is paid a payroll, June's invoice of each done
    let w = World::new("2026-06-01T00:00:00Z", "4242424242424242").await;
    w.add_destination("000123456789").await;
    let debit = w.subscribe(&w.plan(1000).await).await;
    let payout = w.subscribe(&w.payout_plan(20_000, "monthly").await).await;
    w.advance("2026-07-01T01:00:00Z").await;
    let charged = w.invoice_becomes(&s(&w.invoices(&debit).await[0]["id"]), "paid").await;
    let paid_out = w.invoice_becomes(&s(&w.invoices(&payout).await[0]["id"]), "paid_out").await;
    w.queues_drained(&["ChargeQueue", "PayoutQueue"]).await;
    let movements = w.stack.sandbox.movements();
    // WHEN a request for each arrives again, each on the other pipeline's queue (as a message sent
    // before the pipelines were split would), one after the other
    let scope = json!({"tenant": w.tenant, "mode": "test"});
    let misplaced = [
        (&paid_out, Direction::Debit, "ChargeQueue", "pay-out"),
        (&charged, Direction::Payout, "PayoutQueue", "charge-invoice"),
    ];
    for (invoice, direction, queue, own_function) in misplaced {
        let before = w.stack.calls().snapshot().get(own_function).copied().unwrap_or(0);
        let request: ChargeRequest =
            serde_json::from_value(json!({"scope": scope, "invoice": invoice["id"], "attempt": 1})).unwrap();
        let body = serde_json::to_string(&request.message_for(direction).unwrap()).unwrap();
        let url = w.stack.provisioned.queue_url(queue).unwrap().to_owned();
        w.stack.aws.sqs.send_message().queue_url(&url).message_body(body).send().await.unwrap();
        // THEN it is handed over: the invoice's own pipeline function is invoked (nothing else
        // is queued for it: the clock has settled)
        let deadline = Instant::now() + Duration::from_secs(30);
        while w.stack.calls().snapshot().get(own_function).copied().unwrap_or(0) == before {
            assert!(Instant::now() < deadline, "the request on {queue} never reached {own_function}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        w.queues_drained(&["ChargeQueue", "PayoutQueue"]).await;
    }
    // AND that function recognises an attempt already made: no money moves, neither invoice
    // changes, nothing is dead-lettered
    w.queues_drained(&["ChargeQueue", "PayoutQueue", "ChargeDLQ", "PayoutDLQ"]).await;
    assert_eq!(w.stack.sandbox.movements(), movements, "no second charge or payout");
    for before in [&charged, &paid_out] {
        let after = w.invoice(&s(&before["id"])).await;
        assert_eq!((&after["status"], &after["attempt_count"]), (&before["status"], &before["attempt_count"]));
        assert_eq!(w.transactions_of(&s(&before["id"])).await.len(), 1, "{after}");
    }
    w.stack.stop().await;
}

#[tokio::test]
async fn a_transient_payout_failure_is_retried_per_the_tenants_payout_policy() {
    // GIVEN a bank whose systems refuse for now, and a tenant retrying payouts after 1 and 2 days
    let w = World::bare(TestStack::start().await, "2026-06-01T00:00:00Z").await;
    let body = json!({"payout_retry": {"retry_gaps_hours": [24, 48]}});
    let (status, settings) =
        w.api.raw(reqwest::Method::PATCH, "/settings", Some(&w.key), Some(&body.to_string())).await;
    assert_eq!((status, settings["payout_retry"]["max_attempts"].as_i64()), (StatusCode::OK, Some(3)), "{settings}");
    w.add_destination("000222222227").await;
    let sub = w.subscribe(&w.payout_plan(20_000, "monthly").await).await;
    // WHEN June ends, the first attempt (made at the period's end, its own time) fails, and the
    // next is due a day later
    w.advance("2026-07-01T01:00:00Z").await;
    let id = s(&w.invoices(&sub).await[0]["id"]);
    let inv = w.invoice_becomes(&id, "payout_failed").await;
    assert_eq!((inv["failure_reason"].as_str(), inv["attempt_count"].as_i64()), (Some("processing_error"), Some(1)));
    assert_eq!(s(&inv["next_attempt_at"]), "2026-07-02T00:00:00Z");
    // THEN each retry runs at its time, and after the third attempt the payout stays failed, owed
    w.advance("2026-07-02T02:00:00Z").await;
    assert_eq!(w.invoice(&id).await["attempt_count"], 2);
    w.advance("2026-07-04T03:00:00Z").await;
    let inv = w.invoice(&id).await;
    assert_eq!((inv["status"].as_str(), inv["attempt_count"].as_i64()), (Some("payout_failed"), Some(3)), "{inv}");
    assert!(inv["next_attempt_at"].is_null());
    let txns = w.transactions_of(&id).await;
    let attempts: Vec<(i64, String)> = txns.iter().map(|t| (t["attempt"].as_i64().unwrap(), s(&t["status"]))).collect();
    assert_eq!(attempts, [(1, "failed".to_owned()), (2, "failed".to_owned()), (3, "failed".to_owned())]);
    assert_eq!(w.stack.sandbox.movements(), 3, "one gateway payout per attempt, each with its own key");
    w.stack.stop().await;
}
