//! The usage run: `BENCH_USAGE_EVENTS` events (default 100,000) reported through `POST /v1/usage`
//! in batches of 500 across `BENCH_USAGE_SUBSCRIPTIONS` metered subscriptions (default 1,000),
//! then the period closed by a test-clock advance and every subscription's invoice priced. It
//! reports events/s ingested and the time to price them all, each with the AWS requests and
//! DynamoDB write units per event, on a stack of its own.

use super::{Client, env, id, per, round2};
use billy_aws::metering::RequestMeter;
use billy_aws::{AwsClients, LocalEndpoints};
use billy_local::runner::RunnerOptions;
use billy_local::testing::{EventWatch, StackOptions, TestStack};
use futures::stream::{self, StreamExt};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const BATCH: usize = 500;

pub async fn measure() -> Value {
    let events: usize = env("BENCH_USAGE_EVENTS", 100_000);
    let subs: usize = env("BENCH_USAGE_SUBSCRIPTIONS", 1_000);
    let in_flight: usize = env("BENCH_USAGE_CONCURRENCY", 4);
    let meter = RequestMeter::default();
    let options = StackOptions {
        meter: Some(meter.clone()),
        runner: RunnerOptions { pollers_per_queue: 2, ..RunnerOptions::default() },
        sandbox_delay: Duration::from_millis(20),
        capture_logs: false,
        ..StackOptions::default()
    };
    let stack = TestStack::start_custom(options).await;
    assert!(stack.url.starts_with("http://127.0.0.1:"), "load only ever targets loopback");
    let bare = AwsClients::local(&LocalEndpoints::from_env()).await;
    let http = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
    let admin = Client { base: stack.url.clone(), http: http.clone(), key: stack.admin_token.clone() };
    let tenant = admin.post("/tenants", json!({"name": "Usage bench"})).await;
    let api = Client { base: stack.url.clone(), http, key: tenant["api_keys"]["test"].as_str().unwrap().to_owned() };

    // --- setup (not measured) -----------------------------------------------------------------
    let clock = api.post("/test_clocks", json!({"frozen_time": "2026-01-01T00:00:00Z"})).await;
    let customer = api.post("/customers", json!({"name": "Usage", "test_clock": id(&clock)})).await;
    api.post(
        &format!("/customers/{}/payment_methods", id(&customer)),
        json!({"type": "card", "card": {"number": "4242424242424242"}}),
    )
    .await;
    let plan = api
        .post(
            "/plans",
            json!({"name": "Metered", "currency": "usd", "frequency": "monthly", "kind": "metered_debit", "amount": 500,
            "meters": [
                {"metric": "kwh", "pricing": {"scheme": "per_unit", "unit_amount": "21.5"}},
                {"metric": "clicks", "pricing": {"scheme": "graduated", "tiers": [
                    {"up_to": 50, "unit_amount": "10"}, {"up_to": null, "unit_amount": "7.5"}]}},
            ]}),
        )
        .await;
    eprintln!("[bench] usage: creating {subs} metered subscriptions");
    let ids: Vec<String> = stream::iter(0..subs)
        .map(|_| {
            let body = json!({"customer": id(&customer), "plan": id(&plan)});
            let api = &api;
            async move { id(&api.post("/subscriptions", body).await) }
        })
        .buffered(16)
        .collect()
        .await;
    api.post(&format!("/test_clocks/{}/advance", id(&clock)), json!({"frozen_time": "2026-01-20T00:00:00Z"})).await;
    wait_ready(&api, &id(&clock)).await;
    meter.reset();

    // --- ingestion ------------------------------------------------------------------------------
    eprintln!("[bench] usage: reporting {events} events in batches of {BATCH}");
    let started = Instant::now();
    let batches: Vec<Vec<Value>> = (0..events)
        .map(|i| {
            // each subscription's events alternate between its two metrics
            let kwh = (i / subs).is_multiple_of(2);
            json!({"id": format!("u{i}"), "subscription": ids[i % subs], "metric": if kwh { "kwh" } else { "clicks" },
                "quantity": if kwh { "1.5" } else { "2" },
                "timestamp": format!("2026-01-10T00:00:{:02}.{:06}Z", (i / 1_000_000) % 60, i % 1_000_000),
                "dimensions": {"ad": format!("ad_{}", i % 50)}})
        })
        .collect::<Vec<_>>()
        .chunks(BATCH)
        .map(<[Value]>::to_vec)
        .collect();
    let counted: usize = stream::iter(batches)
        .map(|batch| {
            let api = &api;
            async move { api.post("/usage", json!({"events": batch})).await["counted"].as_u64().unwrap_or(0) as usize }
        })
        .buffer_unordered(in_flight)
        .fold(0, |sum, n| async move { sum + n })
        .await;
    let ingest_s = started.elapsed().as_secs_f64();
    assert_eq!(counted, events, "every event counted once");
    let ingested = meter.snapshot();
    meter.reset();

    // --- pricing at period close ------------------------------------------------------------------
    let bus = stack.event_bus("BillyEventBus").expect("the template declares BillyEventBus").to_owned();
    let watch = EventWatch::start(&bare, &bus, "invoice.finalized").await.expect("a watch on the bus");
    eprintln!("[bench] usage: closing the period of {subs} subscriptions");
    let priced = Instant::now();
    api.post(&format!("/test_clocks/{}/advance", id(&clock)), json!({"frozen_time": "2026-02-01T01:00:00Z"})).await;
    let mut seen = std::collections::HashSet::new();
    let mut total_billed: i64 = 0;
    while seen.len() < subs {
        assert!(priced.elapsed() < Duration::from_secs(900), "pricing did not finish: {}/{subs}", seen.len());
        for detail in watch.receive(&bare).await {
            let object = &detail["data"]["object"];
            if let Some(invoice) = object["id"].as_str()
                && seen.insert(invoice.to_owned())
            {
                total_billed += object["total"].as_i64().unwrap_or(0);
            }
        }
    }
    let price_s = priced.elapsed().as_secs_f64();
    watch.remove(&bare).await;
    let pricing = meter.snapshot();
    // every subscription: 5.00 base + 50 × 1.5 kWh × 21.5 + 50 × 2 = 100 clicks (50 × 10 + 50 × 7.5)
    let per_sub = (events / subs) as i64;
    let expected = if events.is_multiple_of(subs) && per_sub == 100 { Some(500 + 1613 + 875) } else { None };
    if let Some(each) = expected {
        assert_eq!(total_billed, each * subs as i64, "every invoice priced from exact totals");
    }
    stack.stop().await;
    let n = events as u64;
    json!({
        "events": events, "subscriptions": subs,
        "ingest": {
            "seconds": round2(ingest_s), "events_per_s": round2(events as f64 / ingest_s),
            "dynamodb_requests_per_event": per(ingested.service_requests("dynamodb"), n),
            "dynamodb_wru_per_event": per(ingested.dynamodb_write_milli_units, n * 1000),
            "dynamodb_rru_per_event": per(ingested.dynamodb_read_milli_units, n * 1000),
        },
        "price_at_period_close": {
            "seconds": round2(price_s), "invoices": subs, "events_per_s": round2(events as f64 / price_s),
            "dynamodb_requests_per_event": per(pricing.service_requests("dynamodb"), n),
            "dynamodb_wru_per_event": per(pricing.dynamodb_write_milli_units, n * 1000),
            "checked_total": expected.is_some(),
        },
    })
}

async fn wait_ready(api: &Client, clock: &str) {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (_, c) = api.call(reqwest::Method::GET, &format!("/test_clocks/{clock}"), None).await;
        if c["status"] == "ready" {
            return;
        }
        assert!(Instant::now() < deadline, "the clock never settled");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
