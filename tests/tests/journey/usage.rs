//! Usage billing: events reported (one, batches, duplicates, concurrent reporters), totalled per
//! period exactly, priced in arrears at period close with per-unit, graduated and volume prices
//! on top of a base amount, and refused once their period is invoiced.

use super::{World, s};
use billy_e2e::{error_code, item_count};
use reqwest::StatusCode;
use serde_json::{Value, json};

impl World {
    /// A metered plan: a 5.00 base, kWh at 21.5 minor units each, and clicks in graduated tiers
    /// (1–5 at 7.00, 6–10 at 6.50, 11+ at 6.00, Stripe's example); its id.
    async fn metered_plan(&self) -> String {
        let body = json!({
            "name": "Energy", "currency": "usd", "frequency": "monthly", "kind": "metered_debit", "amount": 500,
            "meters": [
                {"metric": "kwh", "pricing": {"scheme": "per_unit", "unit_amount": "21.5"}},
                {"metric": "clicks", "pricing": {"scheme": "graduated", "tiers": [
                    {"up_to": 5, "unit_amount": "700"}, {"up_to": 10, "unit_amount": "650"}, {"up_to": null, "unit_amount": "600"}]}},
            ],
        });
        let (status, plan) = self.api.post("/plans", &self.key, &body).await;
        assert_eq!(status, StatusCode::CREATED, "{plan}");
        assert_eq!((plan["kind"].as_str(), plan["amount"].as_i64()), (Some("metered_debit"), Some(500)));
        s(&plan["id"])
    }

    async fn report(&self, body: &Value) -> (StatusCode, Value) {
        self.api.post("/usage", &self.key, body).await
    }

    async fn summary(&self, sub: &str, metric: &str, extra: &str) -> Value {
        let (status, summary) =
            self.api.get(&format!("/usage/summary?subscription={sub}&metric={metric}{extra}"), &self.key).await;
        assert_eq!(status, StatusCode::OK, "{summary}");
        summary
    }
}

#[tokio::test]
async fn usage_is_priced_in_arrears_at_period_close_with_its_base_and_each_component_on_one_invoice() {
    // GIVEN a subscription on a plan with a base amount and two metered components
    let w = World::new("2026-07-01T00:00:00Z", "4242424242424242").await;
    let plan = w.metered_plan().await;
    let sub = w.subscribe(&plan).await;
    let id = s(&sub["id"]);
    w.settled().await;
    // nothing is billed in advance: the first metered invoice comes at the end of the first period
    assert!(w.invoices(&sub).await.is_empty());
    assert_eq!(s(&w.subscription(&sub).await["next_bill_at"]), "2026-08-01T01:00:00Z");
    w.advance("2026-07-31T23:30:00Z").await;
    assert!(w.invoices(&sub).await.is_empty());
    // WHEN usage is reported: one event, then a batch with a decimal quantity and dimensions
    let (status, one) = w
        .report(&json!({"id": "k1", "subscription": id, "metric": "kwh", "quantity": 12.345, "timestamp": "2026-07-02T10:00:00Z"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{one}");
    assert_eq!((one["quantity"].as_str(), one["period_end"].as_str()), (Some("12.345"), Some("2026-08-01T00:00:00Z")));
    let batch = json!({"events": [
        {"id": "k2", "subscription": id, "metric": "kwh", "quantity": "7.655", "timestamp": "2026-07-20T00:00:00Z"},
        {"id": "c1", "subscription": id, "metric": "clicks", "quantity": 4, "timestamp": "2026-07-03T00:00:00Z", "dimensions": {"ad": "ad_1"}},
        {"id": "c2", "subscription": id, "metric": "clicks", "quantity": 3, "timestamp": "2026-07-04T00:00:00Z", "dimensions": {"ad": "ad_2"}},
        {"id": "c3", "subscription": id, "metric": "clicks", "quantity": 1, "timestamp": "2026-07-31T23:00:00Z", "dimensions": {"ad": "ad_1"}},
        {"id": "x1", "subscription": id, "metric": "views", "quantity": 1},
        {"id": "c1", "subscription": id, "metric": "clicks", "quantity": 4, "timestamp": "2026-07-03T00:00:00Z", "dimensions": {"ad": "ad_1"}},
    ]});
    let (status, report) = w.report(&batch).await;
    assert_eq!(status, StatusCode::OK, "{report}");
    assert_eq!(
        (report["counted"].as_u64(), report["duplicates"].as_u64(), report["refused"].as_u64()),
        (Some(4), Some(1), Some(1))
    );
    assert_eq!(report["data"][4]["error"]["code"], "metric_unknown");
    // THEN the period's totals are exact and split by dimension
    let kwh = w.summary(&id, "kwh", "").await;
    assert_eq!(
        (kwh["quantity"].as_str(), kwh["events"].as_u64(), kwh["invoiced"].as_bool()),
        (Some("20"), Some(2), Some(false))
    );
    let clicks = w.summary(&id, "clicks", "&group_by=ad").await;
    assert_eq!(clicks["quantity"], "8");
    assert_eq!(
        clicks["by_dimension"]["totals"],
        json!([{"value": "ad_1", "quantity": "5"}, {"value": "ad_2", "quantity": "3"}])
    );
    // WHEN the period has ended but its grace hour has not: an event still counts
    w.advance("2026-08-01T00:30:00Z").await;
    let (status, late_ok) = w
        .report(&json!({"id": "c4", "subscription": id, "metric": "clicks", "quantity": 2, "timestamp": "2026-07-31T23:59:00Z"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{late_ok}");
    assert!(w.invoices(&sub).await.is_empty());
    // WHEN the grace hour is over THEN one invoice prices the period: base + kWh + clicks by tier
    w.advance("2026-08-01T01:00:00Z").await;
    let invoices = w.invoices(&sub).await;
    assert_eq!(invoices.len(), 1);
    let inv = w.invoice_becomes(&s(&invoices[0]["id"]), "paid").await;
    let lines: Vec<(String, i64)> = inv["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (s(&i["description"]), i["amount"].as_i64().unwrap()))
        .collect();
    assert_eq!(
        lines,
        vec![
            ("Energy base (2026-07-01 – 2026-08-01)".to_owned(), 500),
            // 20 kWh × 21.5 = 430
            ("kwh usage".to_owned(), 430),
            // 10 clicks: 5 × 7.00 + 5 × 6.50
            ("clicks usage, tier 1 (1–5)".to_owned(), 3500),
            ("clicks usage, tier 2 (6–10)".to_owned(), 3250),
        ]
    );
    assert_eq!(inv["total"], 500 + 430 + 3500 + 3250);
    assert_eq!(
        (inv["period_start"].as_str(), inv["period_end"].as_str()),
        (Some("2026-07-01T00:00:00Z"), Some("2026-08-01T00:00:00Z"))
    );
    assert_eq!(inv["items"][1]["metric"], "kwh");
    // AND the period is closed: a later event for it is refused and changes nothing
    let before = item_count(&w.stack, &w.stack.tables().main).await;
    let (status, err) = w
        .report(&json!({"id": "c5", "subscription": id, "metric": "clicks", "quantity": 1, "timestamp": "2026-07-31T00:00:00Z"}))
        .await;
    assert_eq!((status, error_code(&err)), (StatusCode::BAD_REQUEST, "period_closed".to_owned()));
    assert_eq!(item_count(&w.stack, &w.stack.tables().main).await, before);
    let closed = w.summary(&id, "clicks", "&at=2026-07-15T00:00:00Z").await;
    assert_eq!((closed["quantity"].as_str(), closed["invoiced"].as_bool()), (Some("10"), Some(true)));
    // AND the next period takes usage
    let (status, _) = w
        .report(&json!({"id": "k3", "subscription": id, "metric": "kwh", "quantity": 1, "timestamp": "2026-08-01T00:30:00Z"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    w.stack.stop().await;
}

#[tokio::test]
async fn a_usage_id_counts_once_however_often_it_is_reported_and_concurrent_reporters_lose_nothing() {
    let w = World::new("2026-07-01T00:00:00Z", "4242424242424242").await;
    let plan = w.metered_plan().await;
    let sub = w.subscribe(&plan).await;
    let id = s(&sub["id"]);
    w.advance("2026-07-15T00:00:00Z").await;
    // WHEN the same event is posted three times THEN each answer is the first one, counted once
    let event = json!({"id": "same", "subscription": id, "metric": "kwh", "quantity": "2.5", "timestamp": "2026-07-02T00:00:00Z"});
    let mut answers = Vec::new();
    for _ in 0..3 {
        let (status, body) = w.report(&event).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        answers.push(body);
    }
    assert!(answers.windows(2).all(|a| a[0] == a[1]), "{answers:?}");
    // AND the same id with other content is refused as a reused id, changing nothing
    let mut other = event.clone();
    other["quantity"] = json!("3");
    let (status, err) = w.report(&other).await;
    assert_eq!((status, error_code(&err)), (StatusCode::UNPROCESSABLE_ENTITY, "usage_id_reused".to_owned()));
    assert_eq!(w.summary(&id, "kwh", "").await["quantity"], "2.5");
    // WHEN 8 reporters post 30 batches of distinct events each, at once, each batch twice
    let posters = (0..8).map(|p| {
        let w = &w;
        let id = id.clone();
        async move {
            for b in 0..30 {
                let events: Vec<Value> = (0..5)
                    .map(|e| json!({"id": format!("p{p}-b{b}-e{e}"), "subscription": id, "metric": "clicks",
                        "quantity": "0.25", "timestamp": "2026-07-10T00:00:00Z", "dimensions": {"poster": format!("p{p}")}}))
                    .collect();
                for _ in 0..2 {
                    let (status, report) = w.report(&json!({"events": events})).await;
                    assert_eq!(status, StatusCode::OK, "{report}");
                    assert_eq!(report["refused"], 0, "{report}");
                }
            }
        }
    });
    futures::future::join_all(posters).await;
    // THEN every distinct event counted exactly once: 8 × 30 × 5 × 0.25
    let clicks = w.summary(&id, "clicks", "&group_by=poster").await;
    assert_eq!((clicks["quantity"].as_str(), clicks["events"].as_u64()), (Some("300"), Some(1200)));
    let per_poster = clicks["by_dimension"]["totals"].as_array().unwrap();
    assert_eq!(per_poster.len(), 8);
    assert!(per_poster.iter().all(|t| t["quantity"] == "37.5"), "{per_poster:?}");
    // AND the events behind the total list page by page, each once
    let mut seen = std::collections::BTreeSet::new();
    let mut cursor = String::new();
    loop {
        let (status, page) =
            w.api.get(&format!("/usage?subscription={id}&metric=clicks&limit=100{cursor}"), &w.key).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        for e in page["data"].as_array().unwrap() {
            assert!(seen.insert(s(&e["id"])), "listed twice: {e}");
        }
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&starting_after={}", urlencode(next)),
            None => break,
        }
    }
    assert_eq!(seen.len(), 1200);
    w.stack.stop().await;
}

fn urlencode(raw: &str) -> String {
    raw.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
