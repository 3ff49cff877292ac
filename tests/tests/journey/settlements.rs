//! Monthly netting for a marketplace: a customer charged for ad clicks and paid for site clicks
//! (less the tenant's 20 % commission) gets one settlement per month whose parts add up; the
//! settlement job keeps the open month, never changes a closed one, charges a net on the 1st and
//! pays a net out on the 15th.

use super::{World, s};
use billy_e2e::{TestStack, error_code};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

impl World {
    async fn meter_plan(&self, kind: &str, metric: &str, unit_amount: &str) -> String {
        let body = json!({
            "name": metric, "currency": "usd", "frequency": "monthly", "kind": kind,
            "meters": [{"metric": metric, "pricing": {"scheme": "per_unit", "unit_amount": unit_amount}}],
        });
        let (status, plan) = self.api.post("/plans", &self.key, &body).await;
        assert_eq!(status, StatusCode::CREATED, "{plan}");
        s(&plan["id"])
    }

    async fn use_units(&self, id: &str, sub: &Value, metric: &str, quantity: i64, at: &str) -> (StatusCode, Value) {
        let body =
            json!({"id": id, "subscription": sub["id"], "metric": metric, "quantity": quantity, "timestamp": at});
        self.api.post("/usage", &self.key, &body).await
    }

    /// Runs the settlement job for this tenant now; the run.
    async fn settle(&self) -> Value {
        let (status, run) = self.api.post("/settlement_runs", &self.key, &json!({})).await;
        assert_eq!(status, StatusCode::CREATED, "{run}");
        run
    }

    /// Runs the settlement job the way its hourly schedule does (every tenant settling); this
    /// tenant's run, read back from the runs the API lists.
    async fn settle_on_schedule(&self) -> Value {
        let scheduled = || async {
            let (status, runs) = self.api.get("/settlement_runs?limit=100", &self.key).await;
            assert_eq!(status, StatusCode::OK, "{runs}");
            let runs = runs["data"].as_array().unwrap().clone();
            runs.into_iter().filter(|r| r["trigger"] == "schedule").collect::<Vec<Value>>()
        };
        let before: Vec<Value> = scheduled().await.into_iter().map(|r| r["id"].clone()).collect();
        self.stack.run_scheduled("settle-accounts").await.unwrap();
        let new: Vec<Value> = scheduled().await.into_iter().filter(|r| !before.contains(&r["id"])).collect();
        assert_eq!(new.len(), 1, "one run of this tenant per job: {new:?}");
        new[0].clone()
    }

    /// Asks for a verification of `month` and waits (bounded) until it has run.
    pub(super) async fn verify(&self, month: &str) -> Value {
        let (status, v) = self.api.post("/verifications", &self.key, &json!({"month": month})).await;
        assert_eq!((status, v["status"].as_str()), (StatusCode::ACCEPTED, Some("running")), "{v}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let (_, now) = self.api.get(&format!("/verifications/{}", s(&v["id"])), &self.key).await;
            if now["status"] != "running" {
                return now;
            }
            assert!(std::time::Instant::now() < deadline, "the verification never ran: {now}");
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    async fn settlement_of(&self, month: &str) -> Value {
        let (status, list) = self.api.get(&format!("/settlements?customer={}", self.customer), &self.key).await;
        assert_eq!(status, StatusCode::OK, "{list}");
        list["data"].as_array().unwrap().iter().find(|st| st["month"] == month).cloned().unwrap_or(Value::Null)
    }
}

fn actions(run: &Value) -> Vec<String> {
    run["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| format!("{} {}", c["month"].as_str().unwrap(), s(&c["action"])))
        .collect()
}

#[tokio::test]
async fn a_marketplace_month_is_netted_into_one_settlement_charged_on_the_first_and_a_net_payout_leaves_on_the_fifteenth()
 {
    // GIVEN a tenant on monthly netting with a 20 % commission, and a customer with a card and a
    // bank account, charged 0.50 per ad click and paid 1.00 per site click
    let w = World::new("2026-06-01T00:00:00Z", "4242424242424242").await;
    let patch = json!({"settlement": "monthly_net", "commission": {"percent": "20"}});
    let (status, settings) = w.api.raw(Method::PATCH, "/settings", Some(&w.key), Some(&patch.to_string())).await;
    assert_eq!((status, settings["settlement"].as_str()), (StatusCode::OK, Some("monthly_net")), "{settings}");
    w.add_destination("000123456789").await;
    let ads = w.subscribe(&w.meter_plan("metered_debit", "ad_clicks", "50").await).await;
    let site = w.subscribe(&w.meter_plan("metered_payout", "site_clicks", "100").await).await;
    // WHEN June has 100 ad clicks (50.00) and 30 site clicks (30.00, less 6.00 commission)
    w.advance("2026-06-25T00:00:00Z").await;
    for (id, sub, metric, quantity, at) in [
        ("a1", &ads, "ad_clicks", 100, "2026-06-10T00:00:00Z"),
        ("s1", &site, "site_clicks", 30, "2026-06-20T00:00:00Z"),
    ] {
        let (status, event) = w.use_units(id, sub, metric, quantity, at).await;
        assert_eq!(status, StatusCode::CREATED, "{event}");
    }
    w.advance("2026-07-01T01:30:00Z").await;
    // THEN June's two invoices wait in settlement, neither charged nor paid out on its own
    let spend = w.invoices(&ads).await.remove(0);
    let earnings = w.invoices(&site).await.remove(0);
    assert_eq!((spend["status"].as_str(), spend["total"].as_i64()), (Some("in_settlement"), Some(5000)), "{spend}");
    assert_eq!((earnings["status"].as_str(), earnings["total"].as_i64()), (Some("in_settlement"), Some(2400)));
    assert_eq!(earnings["adjustments"][0]["amount"], -600, "the commission is its own line: {earnings}");
    assert_eq!(w.stack.sandbox.movements(), 0);
    // AND before the month closes, the job keeps June open with parts that add up, and a second
    // run changes nothing
    let first = w.settle().await;
    assert_eq!(actions(&first), ["2026-06 opened"]);
    let june = w.settlement_of("2026-06").await;
    assert_eq!(
        (
            june["status"].as_str(),
            june["charged"].as_i64(),
            june["paid_out"].as_i64(),
            june["commission"].as_i64(),
            june["net"].as_i64()
        ),
        (Some("open"), Some(5000), Some(2400), Some(600), Some(2600)),
        "{june}"
    );
    assert_eq!(w.settle().await["changes"], json!([]));
    assert_eq!(w.settlement_of("2026-06").await, june);
    let (status, read) = w.api.get(&format!("/settlements/{}", s(&june["id"])), &w.key).await;
    assert_eq!((status, &read), (StatusCode::OK, &june));
    // WHEN the month closes (1 July, after the usage grace) and the hourly job runs
    w.advance("2026-07-01T03:00:00Z").await;
    let closing = w.settle_on_schedule().await;
    assert_eq!(actions(&closing), ["2026-06 closed", "2026-06 invoices_settled", "2026-06 net_requested"]);
    // THEN the net 26.00 is charged on the 1st, as one invoice listing both sides
    let june = w.settlement_of("2026-06").await;
    assert_eq!((june["status"].as_str(), june["net"].as_i64()), (Some("settled"), Some(2600)), "{june}");
    assert_eq!(june["net_due_at"], "2026-07-01T02:00:00Z");
    let net = w.invoice_becomes(&s(&june["net_invoice"]), "paid").await;
    assert_eq!((net["total"].as_i64(), net["items"][0]["amount"].as_i64()), (Some(2600), Some(5000)));
    assert_eq!(net["adjustments"][0]["amount"], -2400);
    assert_eq!(w.invoice(&s(&spend["id"])).await["status"], "settled");
    assert_eq!(w.invoice(&s(&earnings["id"])).await["status"], "settled");
    assert_eq!(w.stack.sandbox.movements(), 1, "one charge for the month, nothing paid out");
    // AND the customer's June summary shows the same parts, each metric and the daily series
    let (status, summary) = w.api.get(&format!("/customers/{}/summary?month=2026-06", w.customer), &w.key).await;
    assert_eq!(status, StatusCode::OK, "{summary}");
    let usd = &summary["currencies"][0];
    assert_eq!(
        (usd["charged"].as_i64(), usd["paid_out"].as_i64(), usd["commission"].as_i64(), usd["net"].as_i64()),
        (Some(5000), Some(2400), Some(600), Some(2600)),
        "the net invoice is not counted again: {summary}"
    );
    let metrics: Vec<(String, String, i64)> = usd["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (s(&m["metric"]), s(&m["quantity"]), m["amount"].as_i64().unwrap()))
        .collect();
    assert_eq!(metrics, [("ad_clicks".into(), "100".into(), 5000), ("site_clicks".into(), "30".into(), 3000)]);
    assert_eq!(
        (usd["daily"].as_array().map(Vec::len), usd["daily"][9]["usage"]["ad_clicks"].as_str()),
        (Some(30), Some("100"))
    );
    // (without a month, the summary is of the customer's current month, on its test clock)
    let (status, current) = w.api.get(&format!("/customers/{}/summary", w.customer), &w.key).await;
    assert_eq!((status, current["month"].as_str()), (StatusCode::OK, Some("2026-07")), "{current}");
    let (status, err) = w.api.get(&format!("/customers/{}/summary?month=2026-13", w.customer), &w.key).await;
    assert_eq!((status, error_code(&err).as_str()), (StatusCode::BAD_REQUEST, "month_invalid"));
    // AND a June click reported now is refused, and a run after the close changes nothing of June
    let (status, err) = w.use_units("a2", &ads, "ad_clicks", 5, "2026-06-30T12:00:00Z").await;
    assert_eq!((status, error_code(&err).as_str()), (StatusCode::BAD_REQUEST, "period_closed"));
    assert_eq!(w.settle().await["changes"], json!([]));
    assert_eq!(w.settlement_of("2026-06").await, june);
    // WHEN July's earnings exceed its spend: 10 ad clicks (5.00), 100 site clicks (100.00 − 20.00)
    w.advance("2026-07-20T00:00:00Z").await;
    for (id, sub, metric, quantity, at) in [
        ("a3", &ads, "ad_clicks", 10, "2026-07-05T00:00:00Z"),
        ("s2", &site, "site_clicks", 100, "2026-07-06T00:00:00Z"),
    ] {
        let (status, event) = w.use_units(id, sub, metric, quantity, at).await;
        assert_eq!(status, StatusCode::CREATED, "{event}");
    }
    w.advance("2026-08-01T03:00:00Z").await;
    let run = w.settle().await;
    assert_eq!(actions(&run), ["2026-07 closed", "2026-07 invoices_settled"]);
    // THEN July closes owing the customer 75.00, which waits for the 15th
    let july = w.settlement_of("2026-07").await;
    assert_eq!((july["status"].as_str(), july["net"].as_i64()), (Some("closed"), Some(-7500)), "{july}");
    assert_eq!((july["net_due_at"].as_str(), july["net_invoice"].is_null()), (Some("2026-08-15T02:00:00Z"), true));
    w.advance("2026-08-15T03:00:00Z").await;
    assert_eq!(actions(&w.settle().await), ["2026-07 net_requested"]);
    let july = w.settlement_of("2026-07").await;
    let payout = w.invoice_becomes(&s(&july["net_invoice"]), "paid_out").await;
    assert_eq!((payout["direction"].as_str(), payout["total"].as_i64()), (Some("payout"), Some(7500)));
    assert_eq!(w.stack.sandbox.movements(), 2);
    // AND every run is listed with what it changed
    let (_, runs) = w.api.get("/settlement_runs?limit=100", &w.key).await;
    assert_eq!(runs["data"].as_array().map(Vec::len), Some(6), "{runs}");
    // AND verifying June from the journal and the usage events finds everything in agreement
    let bus = w.stack.event_bus("BillyEventBus").unwrap().to_owned();
    let failures = billy_local::testing::EventWatch::start(&w.stack.aws, &bus, "verification.failed").await.unwrap();
    let clean = w.verify("2026-06").await;
    assert_eq!(
        (clean["status"].as_str(), clean["invoices_checked"].as_u64(), clean["settlements_checked"].as_u64()),
        (Some("succeeded"), Some(2), Some(1)),
        "{clean}"
    );
    assert_eq!((clean["usage_totals_checked"].as_u64(), clean["mismatches"].clone()), (Some(2), json!([])));
    let (status, listed) = w.api.get("/verifications", &w.key).await;
    let ids: Vec<&Value> = listed["data"].as_array().unwrap().iter().map(|v| &v["id"]).collect();
    assert_eq!((status, ids), (StatusCode::OK, vec![&clean["id"]]), "{listed}");
    // WHEN June's ad spend invoice is changed in storage, bypassing Billy
    w.stack
        .aws
        .dynamodb
        .update_item()
        .table_name(&w.stack.tables().main)
        .key("PK", aws_sdk_dynamodb::types::AttributeValue::S(format!("{}#test#{}", w.tenant, s(&spend["id"]))))
        .key("SK", aws_sdk_dynamodb::types::AttributeValue::S("#".into()))
        .update_expression("SET #t = :t")
        .expression_attribute_names("#t", "total")
        .expression_attribute_values(":t", aws_sdk_dynamodb::types::AttributeValue::N("4000".into()))
        .send()
        .await
        .unwrap();
    // THEN exactly that mismatch is reported, and announced
    let tampered = w.verify("2026-06").await;
    assert_eq!(tampered["status"], "failed", "{tampered}");
    assert_eq!(
        tampered["mismatches"],
        json!([{"entity": spend["id"], "field": "total", "stored": "4000", "recomputed": "5000"}])
    );
    let mut announced = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline && announced.is_empty() {
        announced.extend(failures.receive(&w.stack.aws).await);
    }
    failures.remove(&w.stack.aws).await;
    assert_eq!(announced.len(), 1, "{announced:?}");
    assert_eq!(
        (announced[0]["data"]["object"]["id"].clone(), announced[0]["data"]["object"]["mismatch_count"].clone()),
        (tampered["id"].clone(), json!(1))
    );
    w.stack.stop().await;
}

#[tokio::test]
async fn the_nightly_verification_checks_the_month_of_a_tenant_billing_in_real_time() {
    // GIVEN a tenant with a customer billed in real time (no test clock), its first invoice paid
    let w = World::bare(TestStack::start().await, "2026-06-01T00:00:00Z").await;
    let (status, customer) = w.api.post("/customers", &w.key, &json!({"name": "Rae"})).await;
    assert_eq!(status, StatusCode::CREATED, "{customer}");
    let card = json!({"type": "card", "card": {"number": "4242424242424242"}});
    let path = format!("/customers/{}/payment_methods", s(&customer["id"]));
    assert_eq!(w.api.post(&path, &w.key, &card).await.0, StatusCode::CREATED);
    let plan = json!({"name": "Pro", "amount": 1000, "currency": "usd", "frequency": "monthly", "kind": "fixed_debit"});
    let (_, plan) = w.api.post("/plans", &w.key, &plan).await;
    let (status, sub) =
        w.api.post("/subscriptions", &w.key, &json!({"customer": customer["id"], "plan": plan["id"]})).await;
    assert_eq!(status, StatusCode::CREATED, "{sub}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (_, listed) = w.api.get(&format!("/invoices?subscription={}", s(&sub["id"])), &w.key).await;
        if listed["data"][0]["status"] == "paid" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never paid: {listed}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // WHEN the nightly job runs
    let month = || chrono::Utc::now().format("%Y-%m").to_string();
    let before = month();
    w.stack.run_scheduled("verify-month").await.unwrap();
    // (the month the job ran in: at a month's end, the one it started or the one it ended in)
    let months = [before, month()];
    // THEN it asked for a verification of this month, which ran by itself and found all in order
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let nightly = loop {
        let (_, listed) = w.api.get("/verifications?limit=100", &w.key).await;
        let found: Vec<Value> = listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| months.iter().any(|m| v["month"] == m.as_str()))
            .cloned()
            .collect();
        if found.len() == 1 && found[0]["status"] != "running" {
            break found[0].clone();
        }
        assert!(std::time::Instant::now() < deadline, "no nightly verification of {months:?}: {listed}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(
        (nightly["trigger"].as_str(), nightly["status"].as_str(), nightly["mismatch_count"].as_u64()),
        (Some("schedule"), Some("succeeded"), Some(0)),
        "{nightly}"
    );
    w.stack.stop().await;
}
