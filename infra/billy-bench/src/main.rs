//! `billy-bench`: one run against the local stack that measures
//! 1. a billing run of N subscriptions all due in one test-clock advance, through tick → bill queue
//!    → generate → charge queue → charge → sandbox gateway → webhook → paid;
//! 2. the AWS requests per invoice (counted by an SDK interceptor) and their modelled cost;
//! 3. the ceiling: the same DynamoDB Local taking one invoice's minimal write set (state + audit
//!    event in one transaction) from a bare client at the same concurrency;
//! 4. API latency, open loop at fixed rates, against bare DynamoDB Local at the same rates (run
//!    first, on a fresh stack and a tenant of its own);
//! 5. a 100,000-row CSV export of the ledger (`BENCH_EXPORT_ROWS`): its time and, run in a process
//!    of its own, its peak resident memory;
//! 6. usage: 100,000 events reported in batches, then priced at period close
//!    (`BENCH_USAGE_EVENTS`, `BENCH_USAGE_SUBSCRIPTIONS`).
//!
//! Every request goes to 127.0.0.1 only. Figures are printed and written to target/bench/last.json.
#![allow(
    clippy::float_arithmetic,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::unwrap_used,
    clippy::expect_used
)]

use aws_sdk_dynamodb::types::{AttributeValue, Put, Select, TransactWriteItem};
use billy_aws::metering::{Meter, Projection, RequestMeter};
use billy_aws::{AwsClients, LocalEndpoints};
use billy_local::runner::RunnerOptions;
use billy_local::testing::{EventWatch, StackOptions, TestStack};
use futures::stream::{self, StreamExt};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod coldstart;
mod cpu;
mod dashboard;
mod export;
mod usage;
mod verify;

/// On-demand prices (us-east-1, USD) used by the cost model.
const DYNAMODB_PER_MILLION_WRU: &str = "0.625";
const DYNAMODB_PER_MILLION_RRU: &str = "0.125";
const SQS_PER_MILLION_REQUESTS: &str = "0.40";
const EVENTBRIDGE_PER_MILLION_EVENTS: &str = "1.00";
const LAMBDA_PER_MILLION_REQUESTS: &str = "0.20";
/// arm64 price per GB-second, and the assumed footprint of one invocation (256 MB for 100 ms).
const LAMBDA_PER_GB_SECOND: &str = "0.0000133334";
const LAMBDA_GB_SECONDS_PER_INVOCATION: &str = "0.025";
/// API Gateway HTTP API, for incoming gateway webhooks.
const HTTP_API_PER_MILLION_REQUESTS: &str = "1.00";

fn env<T: FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).expect("price literal")
}

struct Client {
    base: String,
    http: reqwest::Client,
    key: String,
}

impl Client {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> (u16, Value) {
        let url = format!("{}/v1{path}", self.base);
        let mut req = self.http.request(method, &url).bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req.send().await.expect("runner answers");
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let (status, v) = self.call(reqwest::Method::POST, path, Some(&body)).await;
        assert!((200..300).contains(&status), "POST {path}: {status} {v}");
        v
    }
}

fn id(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_owned()
}

/// Counts items of one index partition with the bare (unmetered) client.
async fn count(ddb: &aws_sdk_dynamodb::Client, table: &str, index: &str, pk: &str) -> u64 {
    let mut total = 0;
    let mut start = None;
    loop {
        let out = ddb
            .query()
            .table_name(table)
            .index_name(index)
            .key_condition_expression(format!("{index}PK = :pk"))
            .expression_attribute_values(":pk", AttributeValue::S(pk.to_owned()))
            .select(Select::Count)
            .set_exclusive_start_key(start)
            .send()
            .await
            .expect("count query");
        total += u64::try_from(out.count).unwrap_or(0);
        start = out.last_evaluated_key;
        if start.is_none() {
            return total;
        }
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Sends `total` requests at a fixed rate regardless of how fast answers come (open loop);
/// latency counts from each request's scheduled time, so queueing delay is not hidden.
async fn open_loop<F, Fut>(rate: u32, seconds: u32, f: F) -> (Vec<f64>, usize)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send + 'static,
{
    let total = (rate * seconds) as usize;
    let f = Arc::new(f);
    let start = tokio::time::Instant::now() + Duration::from_millis(100);
    let mut tasks = Vec::with_capacity(total);
    for i in 0..total {
        let scheduled = start + Duration::from_secs_f64(i as f64 / f64::from(rate));
        let f = Arc::clone(&f);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(scheduled).await;
            let ok = f(i).await;
            (ok, scheduled.elapsed().as_secs_f64() * 1000.0)
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    let mut errors = 0;
    for t in tasks {
        let (ok, ms) = t.await.expect("request task");
        errors += usize::from(!ok);
        latencies.push(ms);
    }
    latencies.sort_by(f64::total_cmp);
    (latencies, errors)
}

/// Waits, two minutes at most, until no function has been invoked for three seconds: the stream
/// consumers and the queues have caught up with what came before.
async fn quiet(stack: &TestStack) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last = stack.calls().snapshot();
    let mut still = Instant::now();
    while Instant::now() < deadline && still.elapsed() < Duration::from_secs(3) {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = stack.calls().snapshot();
        if now != last {
            (last, still) = (now, Instant::now());
        }
    }
}

fn summary((lat, errors): &(Vec<f64>, usize)) -> Value {
    json!({"p50_ms": round2(percentile(lat, 50.0)), "p99_ms": round2(percentile(lat, 99.0)), "max_ms": round2(lat.last().copied().unwrap_or(0.0)), "n": lat.len(), "errors": errors})
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn per(n: u64, invoices: u64) -> f64 {
    round2(n as f64 / invoices.max(1) as f64 * 100.0) / 100.0
}

/// A transaction of `sets` invoices' minimal write sets: the invoice and one audit event, each
/// with a 600-byte body, created conditionally.
fn minimal_write_set(
    ddb: &aws_sdk_dynamodb::Client,
    tables: &billy_aws::Tables,
    sets: u64,
) -> aws_sdk_dynamodb::operation::transact_write_items::builders::TransactWriteItemsFluentBuilder {
    let put = |table: &str, pk: &str, sk: &str| {
        let mut item = std::collections::HashMap::new();
        item.insert("PK".to_owned(), AttributeValue::S(pk.to_owned()));
        item.insert("SK".to_owned(), AttributeValue::S(sk.to_owned()));
        item.insert("body".to_owned(), AttributeValue::S("x".repeat(600)));
        let put = Put::builder()
            .table_name(table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(PK)")
            .build()
            .unwrap();
        TransactWriteItem::builder().put(put).build()
    };
    let mut request = ddb.transact_write_items();
    for _ in 0..sets {
        let key = format!("bench#{}", uuid::Uuid::new_v4().simple());
        request = request.transact_items(put(&tables.main, &key, "#")).transact_items(put(
            &tables.audit,
            &key,
            "v000000000001",
        ));
    }
    request
}

/// Writes `total` invoices' minimal write sets from a bare client, `per_transaction` sets to a
/// transaction, `concurrency` transactions in flight. Returns sets per second.
async fn minimal_write_sets(
    ddb: &aws_sdk_dynamodb::Client,
    tables: &billy_aws::Tables,
    total: u64,
    per_transaction: u64,
    concurrency: usize,
) -> f64 {
    let start = Instant::now();
    stream::iter(0..total.div_ceil(per_transaction))
        .for_each_concurrent(concurrency, |_| async move {
            minimal_write_set(ddb, tables, per_transaction).send().await.expect("ceiling transaction");
        })
        .await;
    total as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("export") {
        return export::child(&args[1..]).await;
    }
    // `billy-bench verify`: the verification run alone.
    if args.first().map(String::as_str) == Some("verify") {
        let invoices = env("BENCH_VERIFY_INVOICES", 100_000usize);
        println!("{}", serde_json::to_string_pretty(&verify::measure(invoices).await).unwrap());
        return;
    }
    // `billy-bench coldstart`: cold start and memory of every function's release binary alone.
    if args.first().map(String::as_str) == Some("coldstart") {
        println!("{}", serde_json::to_string_pretty(&coldstart::measure().await).unwrap());
        return;
    }
    // `billy-bench usage`: the usage run alone.
    if args.first().map(String::as_str) == Some("usage") {
        println!("{}", serde_json::to_string_pretty(&usage::measure().await).unwrap());
        return;
    }
    let n: u64 = env("BENCH_N", 10_000);
    let api_secs: u32 = env("BENCH_API_SECS", 20);
    let post_rate: u32 = env("BENCH_POST_RATE", 200);
    let get_rate: u32 = env("BENCH_GET_RATE", 500);
    let pollers: usize = env("BENCH_POLLERS", 2);
    let concurrency: usize = env("BENCH_CONCURRENCY", 16);
    let timeout_secs: u64 = env("BENCH_TIMEOUT_SECS", 1800);

    let meter = RequestMeter::default();
    let options = StackOptions {
        meter: Some(meter.clone()),
        runner: RunnerOptions { pollers_per_queue: pollers, ..RunnerOptions::default() },
        sandbox_delay: Duration::from_millis(20),
        capture_logs: false,
        ..StackOptions::default()
    };
    // `BENCH_FAIL_ONCE=<function>`: that function's first store call of the billing run fails, as
    // in an emulator stall (at once, where a real stall first waits out the 10 s timeout), so one
    // of its batches (up to 100 invoices) fails for a passing reason: what such a batch costs the
    // run is measured, not left to chance. Only the run's own queue consumers can be named: their
    // first call of the run is that batch's.
    let fail_once = std::env::var("BENCH_FAIL_ONCE").ok().filter(|f| !f.is_empty());
    if let Some(function) = &fail_once {
        let consumers = ["generate-invoice", "charge-invoice", "webhook-processor"];
        assert!(consumers.contains(&function.as_str()), "BENCH_FAIL_ONCE names one of {consumers:?}, not {function}");
    }
    let fault = billy_local::testing::FailFirstStoreCall::disarmed();
    let template = billy_local::Template::load(&billy_local::default_template_path()).expect("template.yaml loads");
    let (faulty, wrapped) = (fail_once.clone(), fault.clone());
    let stack = TestStack::start_with_options(
        &template,
        move |def, config, aws| {
            let aws = if faulty.as_deref() == Some(def.name.as_str()) {
                aws.with_interceptor(wrapped.interceptor())
            } else {
                aws.clone()
            };
            billy_local::functions::build(&def.name, config, &aws)
        },
        options,
    )
    .await;
    assert!(stack.url.starts_with("http://127.0.0.1:"), "load only ever targets loopback");
    let bare = AwsClients::local(&LocalEndpoints::from_env()).await;
    let tables = stack.tables();
    // The meter counts index writes by each index's projection, as the tables were made.
    for table in [&tables.main, &tables.audit] {
        let described = bare.dynamodb.describe_table().table_name(table).send().await.expect("describe table");
        for index in described.table().map(|t| t.global_secondary_indexes()).unwrap_or_default() {
            let keys_only = index.projection().and_then(|p| p.projection_type())
                == Some(&aws_sdk_dynamodb::types::ProjectionType::KeysOnly);
            let projection = if keys_only { Projection::KeysOnly } else { Projection::All };
            meter.project(table, index.index_name().unwrap_or_default(), projection);
        }
    }
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap();
    let admin = Client { base: stack.url.clone(), http: http.clone(), key: stack.admin_token.clone() };

    // --- API latency, open loop, and bare DynamoDB Local at the same rates ---------------------
    // First, on a fresh stack and a tenant of its own: measured after the billing run, the stream
    // consumers still draining it and the emulator grown by it made the ratios noise.
    let latency_tenant = admin.post("/tenants", json!({"name": "Bench latency"})).await;
    let latency_api = Arc::new(Client {
        base: stack.url.clone(),
        http: http.clone(),
        key: latency_tenant["api_keys"]["test"].as_str().unwrap().to_owned(),
    });
    let cus = id(&latency_api.post("/customers", json!({"name": "Latency"})).await);
    let created = Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let post_invoices = |seconds: u32| {
        let (api, created, cus) = (Arc::clone(&latency_api), Arc::clone(&created), cus.clone());
        open_loop(post_rate, seconds, move |_| {
            let (api, created, cus) = (Arc::clone(&api), Arc::clone(&created), cus.clone());
            async move {
                let body = json!({"customer": cus, "currency": "usd", "items": [{"description": "Seat", "quantity": 2, "unit_amount": 1999}]});
                let (status, v) = api.call(reqwest::Method::POST, "/invoices", Some(&body)).await;
                if let Some(id) = v["id"].as_str() {
                    created.lock().await.push(id.to_owned());
                }
                status == 201
            }
        })
    };
    // A fresh emulator's JVM compiles its hot paths in the first seconds of load: a few seconds of
    // POSTs, not measured, go first, so neither Billy nor the bare calls (warmed again below) pay
    // for the warm-up.
    post_invoices(env("BENCH_API_WARMUP_SECS", 5)).await;
    created.lock().await.clear();
    let bare_puts = |seconds: u32| {
        let (ddb, table) = (bare.dynamodb.clone(), tables.main.clone());
        open_loop(post_rate, seconds, move |i| {
            let (ddb, table) = (ddb.clone(), table.clone());
            async move {
                ddb.put_item()
                    .table_name(table)
                    .item("PK", AttributeValue::S(format!("lat#{i}")))
                    .item("SK", AttributeValue::S("#".into()))
                    .item("body", AttributeValue::S("x".repeat(600)))
                    .send()
                    .await
                    .is_ok()
            }
        })
    };
    // Once the stream consumers have caught up with the warm-up, so its work does not slow the
    // bare calls; the bare PutItem path warmed too.
    quiet(&stack).await;
    bare_puts(2).await;
    let bare_put = bare_puts(api_secs).await;
    // What a write needs at least: a consistent read (the key, the customer) and a transaction of
    // the entity and its audit event, from a bare client at the same rate.
    let bare_transaction = {
        let (ddb, tables) = (bare.dynamodb.clone(), tables.clone());
        open_loop(post_rate, api_secs, move |i| {
            let (ddb, tables) = (ddb.clone(), tables.clone());
            async move {
                let read = ddb
                    .get_item()
                    .table_name(&tables.main)
                    .key("PK", AttributeValue::S(format!("lat#{i}")))
                    .key("SK", AttributeValue::S("#".into()))
                    .consistent_read(true)
                    .send()
                    .await;
                read.is_ok() && minimal_write_set(&ddb, &tables, 1).send().await.is_ok()
            }
        })
        .await
    };
    let bare_get = {
        let (ddb, table) = (bare.dynamodb.clone(), tables.main.clone());
        let puts = (post_rate * api_secs) as usize;
        open_loop(get_rate, api_secs, move |i| {
            let (ddb, table) = (ddb.clone(), table.clone());
            async move {
                ddb.get_item()
                    .table_name(table)
                    .key("PK", AttributeValue::S(format!("lat#{}", i % puts)))
                    .key("SK", AttributeValue::S("#".into()))
                    .consistent_read(true)
                    .send()
                    .await
                    .is_ok()
            }
        })
        .await
    };
    let post_lat = post_invoices(api_secs).await;
    let ids = Arc::new(created.lock().await.clone());
    let get_lat = {
        let (api, ids) = (Arc::clone(&latency_api), Arc::clone(&ids));
        open_loop(get_rate, api_secs, move |i| {
            let (api, ids) = (Arc::clone(&api), Arc::clone(&ids));
            async move {
                !ids.is_empty()
                    && api.call(reqwest::Method::GET, &format!("/invoices/{}", ids[i % ids.len()]), None).await.0 == 200
            }
        })
        .await
    };
    // --- setup (not measured) ---------------------------------------------------------------
    let tenant = admin.post("/tenants", json!({"name": "Bench"})).await;
    let api = Client {
        base: stack.url.clone(),
        http: http.clone(),
        key: tenant["api_keys"]["test"].as_str().unwrap().to_owned(),
    };
    let scope = format!("{}#test", id(&tenant));
    let t0 = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").unwrap().with_timezone(&chrono::Utc);
    let clock = api.post("/test_clocks", json!({"frozen_time": t0})).await;
    let customer = api.post("/customers", json!({"name": "Bench", "test_clock": id(&clock)})).await;
    api.post(
        &format!("/customers/{}/payment_methods", id(&customer)),
        json!({"type": "card", "card": {"number": "4242424242424242"}}),
    )
    .await;
    let plan = api
        .post(
            "/plans",
            json!({"name": "Bench", "amount": 1000, "currency": "usd", "frequency": "monthly", "kind": "fixed_debit"}),
        )
        .await;
    let start = t0 + chrono::Duration::days(1);
    eprintln!("[bench] creating {n} subscriptions due at {start}");
    let setup = Instant::now();
    stream::iter(0..n)
        .for_each_concurrent(concurrency, |_| {
            let body = json!({"customer": id(&customer), "plan": id(&plan), "start": start});
            let api = &api;
            async move {
                api.post("/subscriptions", body).await;
            }
        })
        .await;
    eprintln!("[bench] setup took {:.1} s", setup.elapsed().as_secs_f64());
    // (the latency phase's and the setup's stream work is not the billing run's)
    quiet(&stack).await;
    meter.reset();
    stack.calls().reset();

    // --- 1. billing run ---------------------------------------------------------------------
    // The run ends when the dashboard's counters (kept from Billy's own journal) show every
    // invoice paid, read straight from their table five times a second. Due → paid is timed on a
    // sample, one invoice in sixteen (its id ends in 0 or g), watched through Billy's own
    // `invoice.paid` events by a rule on its bus to a bench queue: watching every invoice that way
    // cost the emulator about 3 ms of CPU per invoice, on the same two cores as the run.
    let report_table = stack.provisioned.tables.get("ReportTable").expect("the template declares ReportTable");
    let reports = billy_aws::reports::DynamoReports::new(bare.dynamodb.clone(), report_table);
    let bench_scope = billy_core::tenant::Scope::parse_key(&scope).expect("the bench tenant's scope");
    let usd = billy_core::money::Currency::parse("usd", "currency").expect("a currency");
    let bus = stack.event_bus("BillyEventBus").expect("the template declares BillyEventBus").to_owned();
    let sample = json!({"data": {"object": {"id": [{"suffix": "0"}, {"suffix": "g"}]}}});
    let watch =
        EventWatch::start_matching(&bare, &bus, "invoice.paid", Some(sample)).await.expect("a watch on the bus");
    let cpu_before = cpu::sample();
    fault.arm();
    let run = Instant::now();
    api.post(
        &format!("/test_clocks/{}/advance", id(&clock)),
        json!({"frozen_time": start + chrono::Duration::minutes(1)}),
    )
    .await;
    let mut paid_at: Vec<f64> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut counted = 0;
    let mut reported = Instant::now();
    let mut read_at = Instant::now();
    while counted < n {
        assert!(run.elapsed() < Duration::from_secs(timeout_secs), "billing run did not finish: {counted}/{n} paid");
        if reported.elapsed() > Duration::from_secs(10) {
            eprintln!("[bench] {:.0} s: {counted}/{n} paid", run.elapsed().as_secs_f64());
            reported = Instant::now();
        }
        for detail in watch.receive_within(&bare, Duration::from_millis(200)).await {
            if let Some(invoice) = detail["data"]["object"]["id"].as_str()
                && seen.insert(invoice.to_owned())
            {
                paid_at.push(run.elapsed().as_secs_f64());
            }
        }
        if read_at.elapsed() >= Duration::from_millis(200) {
            read_at = Instant::now();
            counted = dashboard::paid_count(&reports, &bench_scope, usd).await;
            assert!(counted <= n, "the counters show {counted} paid of {n} invoices: counted twice");
        }
    }
    let wall = run.elapsed().as_secs_f64();
    let cpu_used = cpu::between(&cpu_before, &cpu::sample());
    if let Some(function) = &fail_once {
        assert!(fault.fired(), "{function}'s injected failure never fired during the billing run");
    }
    // The sample's last events may still be on their way (they were paid by `wall`): taken until
    // a second passes without one, for at most half a minute.
    let draining = Instant::now();
    while draining.elapsed() < Duration::from_secs(30) {
        let details = watch.receive_within(&bare, Duration::from_secs(1)).await;
        if details.is_empty() {
            break;
        }
        for detail in details {
            if let Some(invoice) = detail["data"]["object"]["id"].as_str()
                && seen.insert(invoice.to_owned())
            {
                paid_at.push(wall);
            }
        }
    }
    watch.remove(&bare).await;
    paid_at.sort_by(f64::total_cmp);
    // (none when the sample is empty, as it may be for a small N)
    let sampled = |p: f64| (!paid_at.is_empty()).then(|| round2(percentile(&paid_at, p)));
    let (p50, p99) = (sampled(50.0), sampled(99.0));
    let measured: Meter = meter.snapshot();
    let calls: BTreeMap<String, u64> = stack.calls().snapshot();
    let invoices = count(&bare.dynamodb, &tables.main, "GSI1", &format!("{scope}#invoice")).await;
    assert_eq!(invoices, n, "no invoice lost or duplicated");
    let movements = stack.sandbox.movements() as u64;
    assert_eq!(movements, n, "exactly one gateway charge per invoice");
    let rate = n as f64 / wall;

    // --- 2. requests and cost per invoice -----------------------------------------------------
    let ddb_requests = measured.service_requests("dynamodb");
    let sqs_requests = measured.service_requests("sqs");
    let invocations: u64 = calls.values().sum();
    let webhooks = calls.get("webhook-receiver").copied().unwrap_or(0);
    let million = Decimal::from(1_000_000);
    let units = |milli: u64| Decimal::from(milli) / Decimal::from(1000);
    let cost_per_invoice = (units(measured.dynamodb_write_milli_units) * d(DYNAMODB_PER_MILLION_WRU)
        + units(measured.dynamodb_read_milli_units) * d(DYNAMODB_PER_MILLION_RRU)
        + Decimal::from(sqs_requests) * d(SQS_PER_MILLION_REQUESTS)
        + Decimal::from(measured.eventbridge_entries) * d(EVENTBRIDGE_PER_MILLION_EVENTS)
        + Decimal::from(invocations)
            * (d(LAMBDA_PER_MILLION_REQUESTS)
                + million * d(LAMBDA_PER_GB_SECOND) * d(LAMBDA_GB_SECONDS_PER_INVOCATION))
        + Decimal::from(webhooks) * d(HTTP_API_PER_MILLION_REQUESTS))
        / million
        / Decimal::from(n);
    let cost_per_million = (cost_per_invoice * million).round_dp(2);

    // --- 3. ceiling: the minimal write set of one invoice from a bare client -----------------
    let ceiling_n = n.min(5000);
    let ceiling = minimal_write_sets(&bare.dynamodb, &tables, ceiling_n, 1, concurrency).await;
    // and the same sets packed 25 to a transaction, as Billy packs its own changes
    let ceiling_packed = minimal_write_sets(&bare.dynamodb, &tables, ceiling_n, 25, concurrency).await;

    let p99_of = |l: &(Vec<f64>, usize)| percentile(&l.0, 99.0);
    eprintln!("[bench] the dashboard's overview of {n} invoices");
    let overview = dashboard::overview(&api, n, 1000, env("BENCH_OVERVIEW_LOADS", 30)).await;

    let report = json!({
        "n": n,
        "billing_run": {
            "wall_s": round2(wall), "invoices_per_s": round2(rate), "due_to_paid_p50_s": p50, "due_to_paid_p99_s": p99,
            "due_to_paid_sample": paid_at.len(),
            "cpu_cores_used": cpu_used,
            "ratio_to_ceiling": round2(rate / ceiling), "ratio_to_packed_ceiling": round2(rate / ceiling_packed),
            "ratio_to_python_peer_44_per_s": round2(rate / 44.0),
            "failed_once": fail_once,
        },
        "dashboard_overview": overview,
        "per_invoice": {
            "dynamodb_requests": per(ddb_requests, n), "dynamodb_wru": per(measured.dynamodb_write_milli_units, n * 1000),
            "dynamodb_rru": per(measured.dynamodb_read_milli_units, n * 1000), "sqs_requests": per(sqs_requests, n),
            "eventbridge_entries": per(measured.eventbridge_entries, n), "invocations": per(invocations, n),
        },
        "dynamodb_units_per_invoice": measured.dynamodb_units_by_target.iter().map(|((kind, target), milli)| {
            let name = if target == &tables.main { "main".to_owned() } else if target == &tables.audit { "audit".to_owned() }
                else { target.replace(&tables.main, "main").replace(&tables.audit, "audit") };
            (format!("{kind} {name}"), json!(per(*milli, n * 1000)))
        }).collect::<serde_json::Map<_, _>>(),
        "requests": measured.requests.iter().map(|((s, o), c)| (format!("{s}:{o}"), json!(c))).collect::<serde_json::Map<_, _>>(),
        "invocations": calls,
        "cost_usd_per_million_invoices": cost_per_million.to_string(),
        "ceiling_transactions_per_s": round2(ceiling),
        "ceiling_packed_invoices_per_s": round2(ceiling_packed),
        "api": {
            "post_invoices": summary(&post_lat), "get_invoice": summary(&get_lat),
            "bare_put_item": summary(&bare_put), "bare_get_item": summary(&bare_get),
            "bare_read_and_transaction": summary(&bare_transaction),
            "post_p99_ratio": round2(p99_of(&post_lat) / p99_of(&bare_put)), "get_p99_ratio": round2(p99_of(&get_lat) / p99_of(&bare_get)),
            "post_p99_ratio_to_bare_read_and_transaction": round2(p99_of(&post_lat) / p99_of(&bare_transaction)),
            "post_rate": post_rate, "get_rate": get_rate, "seconds": api_secs,
        },
    });
    stack.stop().await;
    // --- 5. the 100,000-row export ------------------------------------------------------------
    let mut report = report;
    // --- 6. usage: ingestion and pricing at period close ----------------------------------------
    if env("BENCH_USAGE_EVENTS", 100_000usize) > 0 {
        report["usage"] = usage::measure().await;
    }
    // --- 7. the verification job over a month of 100,000 invoices -----------------------------
    let verify_invoices: usize = env("BENCH_VERIFY_INVOICES", 100_000);
    if verify_invoices > 0 {
        eprintln!("[bench] seeding and verifying {verify_invoices} invoices");
        report["verification"] = verify::measure(verify_invoices).await;
    }
    let export_rows: usize = env("BENCH_EXPORT_ROWS", 100_000);
    if export_rows > 0 {
        eprintln!("[bench] seeding and exporting {export_rows} ledger rows");
        report["export"] = export::measure(export_rows).await;
    }
    if env("BENCH_COLDSTART_RUNS", 5usize) > 0 {
        eprintln!("[bench] cold start and memory of every function's binary");
        report["cold_start"] = coldstart::measure().await;
    }
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("last.json"), serde_json::to_string_pretty(&report).unwrap()).unwrap();
}
