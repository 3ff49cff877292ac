//! The dashboard's side of the API: reports kept from the journal (payments, refunds and failed
//! first attempts counted once each, even when the stream delivers them again, twice at once),
//! the dashboard's session cookie (reads only, its own tenant only), and customer portal links
//! (one customer, refused when altered or expired).

use super::{World, s};
use aws_lambda_events::event::dynamodb::{Event as DynamoDbEvent, EventRecord};
use billy_aws::reports::DynamoReports;
use billy_core::ports::ReportRepository;
use billy_e2e::error_code;
use billy_lambda::{StreamBatch, StreamFunction};
use billy_local::functions::Handler;
use billy_local::testing::TestStack;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// A request to the stack's runner (loopback only) with an optional cookie.
async fn call(w: &World, method: Method, path: &str, cookie: Option<&str>, body: Option<Value>) -> reqwest::Response {
    assert!(w.stack.url.starts_with("http://127.0.0.1:"));
    let mut req = client().request(method, format!("{}{path}", w.stack.url));
    if let Some(cookie) = cookie {
        req = req.header(COOKIE, cookie);
    }
    if let Some(body) = body {
        req = req.json(&body);
    }
    req.send().await.unwrap()
}

async fn json_of(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The `name=value` of the response's `Set-Cookie` for `name`, with its attributes.
fn set_cookie(response: &reqwest::Response, name: &str) -> (String, String) {
    let header = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} cookie set"))
        .to_owned();
    let pair = header.split(';').next().unwrap().to_owned();
    (pair, header)
}

/// Signs in to the dashboard with `key`; the session cookie as `name=value`.
async fn sign_in(w: &World, key: &str) -> String {
    let response = call(w, Method::POST, "/dashboard/session", None, Some(json!({"api_key": key}))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let (pair, header) = set_cookie(&response, "billy_session");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=3600"] {
        assert!(header.contains(attribute), "{attribute} in {header}");
    }
    let (_, body) = json_of(response).await;
    assert_eq!((body["object"].as_str(), body["livemode"].as_bool()), (Some("dashboard_session"), Some(false)));
    assert!(!body.to_string().contains(key), "the answer never repeats the key");
    pair
}

/// A report, waited for (bounded) until `ready` holds: counters follow the stream.
async fn report_when(w: &World, path: &str, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = w.api.get(path, &w.key).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if ready(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{path} never became what was expected: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn usd(report: &Value) -> Value {
    report["currencies"].as_array().unwrap().iter().find(|c| c["currency"] == "usd").cloned().unwrap_or(Value::Null)
}

fn statuses(report: &Value) -> Vec<(String, i64, Value)> {
    let mut out: Vec<_> = usd(report)["statuses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (s(&r["status"]), r["count"].as_i64().unwrap(), r["amount"].clone()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

const MARCH: &str = "/reports/revenue?from=2026-03-01&to=2026-03-31";

#[tokio::test]
async fn reports_count_payments_refunds_and_failed_first_attempts_once_each() {
    // GIVEN a tenant on a clock at 10 March, with two paid invoices (25.00 and 15.00), 5.00 of the
    // first refunded, and another customer's 7.00 invoice declined at its first attempt
    // (on a stack whose counting function the test can also call)
    let tally: Arc<Mutex<Option<Arc<dyn StreamFunction>>>> = Arc::default();
    let template = billy_local::Template::load(&billy_local::default_template_path()).unwrap();
    let kept = Arc::clone(&tally);
    let stack = TestStack::start_with(&template, move |def, config, aws| {
        let handler = billy_local::functions::build(&def.name, config, aws)?;
        if let Handler::Stream(h) = &handler
            && def.name == "tally-reports"
        {
            *kept.lock().unwrap() = Some(Arc::clone(h));
        }
        Ok(handler)
    })
    .await;
    let w = World::on(stack, "2026-03-10T00:00:00Z", "4242424242424242").await;
    let first = w.paid_one_off(2500).await;
    w.paid_one_off(1500).await;
    let (status, body) = w.patch_invoice(&first, &json!({"action": "refund", "amount": 500})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    w.invoice_becomes(&first, "partially_refunded").await;
    let (_, bob) = w.api.post("/customers", &w.key, &json!({"name": "Bob", "test_clock": w.clock})).await;
    let bob = s(&bob["id"]);
    let declined = json!({"type": "card", "card": {"number": "4000000000000002"}});
    let (status, _) = w.api.post(&format!("/customers/{bob}/payment_methods"), &w.key, &declined).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, draft) = w
        .api
        .post(
            "/invoices",
            &w.key,
            &json!({"customer": bob, "currency": "usd", "items": [{"description": "Setup", "unit_amount": 700}]}),
        )
        .await;
    let failing = s(&draft["id"]);
    w.api.post(&format!("/invoices/{failing}/charge"), &w.key, &json!({})).await;
    w.invoice_becomes(&failing, "charged_with_error").await;

    // THEN March shows 40.00 collected from two invoices on the 10th, one refund of 5.00, net 35.00
    let revenue = report_when(&w, MARCH, |r| usd(r)["totals"]["refunded"] == 500).await;
    let usd_revenue = usd(&revenue);
    assert_eq!(
        usd_revenue["totals"],
        json!({"collected": 4000, "refunded": 500, "paid_out": 0, "charged_back": 0, "net": 3500, "invoices_paid": 2, "refunds": 1, "payouts": 0})
    );
    let days = usd_revenue["series"].as_array().unwrap();
    assert_eq!(days.len(), 31, "every day of March, zeros included");
    assert_eq!((days[9]["period"].as_str(), days[9]["collected"].as_i64()), (Some("2026-03-10"), Some(4000)));
    // AND by month, March holds the same
    let (_, by_month) = w.api.get("/reports/revenue?interval=month&from=2026-01-01&to=2026-03-31", &w.key).await;
    let months = usd(&by_month)["series"].clone();
    assert_eq!((months[2]["period"].as_str(), months[2]["net"].as_i64()), (Some("2026-03"), Some(3500)));
    // AND the invoices are counted where they are now, with their totals (none left in pending)
    let invoices = report_when(&w, "/reports/invoices", |r| {
        statuses(r).iter().any(|(status, _, _)| status == "charged_with_error")
    })
    .await;
    assert_eq!(
        statuses(&invoices),
        [
            ("charged_with_error".to_owned(), 1, json!(700)),
            ("paid".to_owned(), 1, json!(1500)),
            ("partially_refunded".to_owned(), 1, json!(2500)),
        ]
    );
    // AND the dunning funnel has one failed first attempt of 7.00 in March
    let (_, dunning) = w.api.get("/reports/dunning?from=2026-03&to=2026-03", &w.key).await;
    assert_eq!(usd(&dunning)["totals"]["first_attempt_failed"], 1, "{dunning}");
    assert_eq!(usd(&dunning)["totals"]["amount_failed"], 700, "{dunning}");

    // WHEN the journal's stream is delivered to the counting function again, as Lambda delivers
    // it after a lost answer or a crash: each shard whole, twice at once, then from its middle,
    // then the window's last invocation, without records
    let tally = tally.lock().unwrap().clone().expect("the stack hosts tally-reports");
    let shards = billy_local::streams::records(
        &billy_local::streams::local_client(),
        &w.stack.provisioned.streams["AuditTable"],
    )
    .await
    .unwrap();
    assert!(shards.iter().map(|(_, records)| records.len()).sum::<usize>() >= 6, "the journal's events");
    let batch = |shard: &str, records: &[EventRecord]| {
        let mut event = DynamoDbEvent::default();
        event.records = records.to_vec();
        StreamBatch { event, shard: Some(shard.to_owned()) }
    };
    let reports = DynamoReports::new(w.stack.aws.dynamodb.clone(), w.stack.provisioned.tables["ReportTable"].clone());
    // (The runner counted them through their shard's checkpoint, as Lambda names the shard.)
    let mut checkpoints = 0;
    for (shard, records) in &shards {
        let stream = records.first().and_then(|r| r.event_source_arn.clone()).unwrap_or_default();
        checkpoints += usize::from(reports.counted_to(&format!("{stream}#{shard}")).await.unwrap().is_some());
    }
    assert!(checkpoints >= 1, "no shard was counted through its checkpoint");
    for (shard, records) in &shards {
        let (a, b) = tokio::join!(tally.handle(batch(shard, records)), tally.handle(batch(shard, records)));
        for answer in [a.unwrap(), b.unwrap(), tally.handle(batch(shard, &records[records.len() / 2..])).await.unwrap()]
        {
            assert!(answer.batch_item_failures.is_empty(), "{:?}", answer.batch_item_failures);
        }
        assert!(tally.handle(batch(shard, &[])).await.unwrap().batch_item_failures.is_empty());
    }
    // THEN nothing more is counted
    let (_, again) = w.api.get(MARCH, &w.key).await;
    assert_eq!(usd(&again)["totals"], usd_revenue["totals"]);
    let (_, invoices_again) = w.api.get("/reports/invoices", &w.key).await;
    assert_eq!(statuses(&invoices_again), statuses(&invoices));

    // AND another tenant's reports are empty
    let (_, other_key, _) = w.api.tenant(&w.stack, "Other").await;
    let (status, theirs) = w.api.get(MARCH, &other_key).await;
    assert_eq!((status, theirs["currencies"].clone()), (StatusCode::OK, json!([])));
    // AND bad ranges are refused clearly
    for (path, param) in [
        ("/reports/revenue?from=2026-03-31&to=2026-03-01", "from"),
        ("/reports/revenue?from=2024-01-01&to=2026-03-01", "from"),
        ("/reports/revenue?interval=week", "interval"),
        ("/reports/revenue?to=2026-02-30", "to"),
        ("/reports/renewals?days=0", "days"),
        ("/reports/dunning?from=2026-13", "from"),
    ] {
        let (status, body) = w.api.get(path, &w.key).await;
        assert_eq!((status, body["error"]["param"].as_str()), (StatusCode::BAD_REQUEST, Some(param)), "{path}: {body}");
    }
}

#[tokio::test]
async fn renewals_ahead_move_with_each_billed_period() {
    // GIVEN a 10.00 monthly subscription made on a clock at 10 March (its first month billed at once)
    let w = World::new("2026-03-10T00:00:00Z", "4242424242424242").await;
    let plan = w.plan(1000).await;
    w.subscribe(&plan).await;
    let renewals = "/reports/renewals?from=2026-04-01&days=60";
    let on = |report: &Value, day: &str| {
        let usd = usd(report);
        let row = usd["series"].as_array().unwrap().iter().find(|r| r["period"] == day).cloned().unwrap();
        (row["count"].as_i64().unwrap(), row["amount"].as_i64().unwrap())
    };
    // THEN it is due to renew on 10 April, for 10.00
    let report = report_when(&w, renewals, |r| usd(r)["count"] == 1).await;
    assert_eq!((on(&report, "2026-04-10"), usd(&report)["amount"].as_i64()), ((1, 1000), Some(1000)));
    // WHEN April is billed
    w.advance("2026-04-10T00:05:00Z").await;
    // THEN the renewal has moved to 10 May, once
    let report = report_when(&w, renewals, |r| on(r, "2026-05-10") == (1, 1000)).await;
    assert_eq!((on(&report, "2026-04-10"), usd(&report)["count"].as_i64()), ((0, 0), Some(1)));
}

#[tokio::test]
async fn a_dashboard_session_reads_its_own_tenant_only_and_changes_nothing() {
    // GIVEN a tenant with a paid invoice, and a second tenant
    let w = World::new("2026-03-10T00:00:00Z", "4242424242424242").await;
    let invoice = w.paid_one_off(1200).await;
    let (_, other_key, _) = w.api.tenant(&w.stack, "Other").await;
    let (_, theirs) = w.api.post("/customers", &other_key, &json!({"name": "Theirs"})).await;

    // WHEN the first signs in to the dashboard
    let cookie = sign_in(&w, &w.key).await;
    // THEN its reads work with the cookie alone
    let customer = &w.customer;
    for path in [
        "/v1/reports/revenue".to_owned(),
        "/v1/reports/invoices".to_owned(),
        "/v1/reports/dunning".to_owned(),
        "/v1/reports/renewals".to_owned(),
        "/v1/customers".to_owned(),
        format!("/v1/customers/{customer}"),
        format!("/v1/customers/{customer}/summary"),
        format!("/v1/customers/{customer}/history"),
        format!("/v1/invoices?customer={customer}"),
        format!("/v1/transactions?customer={customer}"),
        format!("/v1/audit?entity={invoice}"),
    ] {
        let (status, body) = json_of(call(&w, Method::GET, &path, Some(&cookie), None).await).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
    }
    let (_, customers) = json_of(call(&w, Method::GET, "/v1/customers", Some(&cookie), None).await).await;
    assert_eq!(customers["data"].as_array().unwrap().len(), 1, "only its own customer: {customers}");
    // AND the other tenant's customer does not exist for it
    let theirs_path = format!("/v1/customers/{}", s(&theirs["id"]));
    let response = call(&w, Method::GET, &theirs_path, Some(&cookie), None).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    // AND a write with the cookie is refused, and changes nothing
    let response = call(&w, Method::POST, "/v1/customers", Some(&cookie), Some(json!({"name": "Mallory"}))).await;
    let (status, body) = json_of(response).await;
    assert_eq!((status, error_code(&body)), (StatusCode::UNAUTHORIZED, "invalid_api_key".to_owned()));
    let (_, after) = w.api.get("/customers", &w.key).await;
    assert_eq!(after["data"].as_array().unwrap().len(), 1);
    // AND routes the dashboard has no business reading refuse the cookie
    let response = call(&w, Method::GET, "/v1/settings", Some(&cookie), None).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // AND an altered cookie, a wrong key and a live key's absence are refused
    let mut altered = cookie.clone().into_bytes();
    let at = altered.len() - 5;
    altered[at] = if altered[at] == b'a' { b'b' } else { b'a' };
    let altered = String::from_utf8(altered).unwrap();
    let response = call(&w, Method::GET, "/v1/customers", Some(&altered), None).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let wrong = "sk_test_0000000000000000000000000000000x";
    let response = call(&w, Method::POST, "/dashboard/session", None, Some(json!({"api_key": wrong}))).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(response.headers().get(SET_COOKIE).is_none());
    // AND the session says who it is, and signing out clears it
    let (status, me) = json_of(call(&w, Method::GET, "/dashboard/session", Some(&cookie), None).await).await;
    assert_eq!((status, me["tenant"].as_str()), (StatusCode::OK, Some(w.tenant.as_str())));
    let out = call(&w, Method::DELETE, "/dashboard/session", Some(&cookie), None).await;
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    assert!(set_cookie(&out, "billy_session").1.contains("Max-Age=0"));

    // AND the pages are served with a policy that allows nothing but Billy's own origin
    let page = call(&w, Method::GET, "/dashboard", None, None).await;
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(page.text().await.unwrap().contains("/dashboard/assets/app.js"));
    let script = call(&w, Method::GET, "/dashboard/assets/app.js", None, None).await;
    assert_eq!(script.status(), StatusCode::OK);
    assert!(script.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
    let missing = call(&w, Method::GET, "/dashboard/assets/secrets.txt", None, None).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_portal_link_shows_its_one_customer_until_it_expires() {
    // GIVEN a tenant whose customer Ada has a paid invoice, and another customer with one too
    let w = World::new("2026-03-10T00:00:00Z", "4242424242424242").await;
    let ada_invoice = w.paid_one_off(1800).await;
    let (_, bob) = w.api.post("/customers", &w.key, &json!({"name": "Bob", "test_clock": w.clock})).await;
    let bob = s(&bob["id"]);
    let (_, bobs) = w
        .api
        .post(
            "/invoices",
            &w.key,
            &json!({"customer": bob, "currency": "usd", "items": [{"description": "Bob's", "unit_amount": 900}]}),
        )
        .await;

    // WHEN a portal link is made for Ada
    let path = format!("/customers/{}/portal_sessions", w.customer);
    let (status, session) = w.api.raw(Method::POST, &path, Some(&w.key), Some(r#"{"expires_in": 600}"#)).await;
    assert_eq!(status, StatusCode::CREATED, "{session}");
    assert_eq!(
        (session["object"].as_str(), session["customer"].as_str()),
        (Some("portal_session"), Some(w.customer.as_str()))
    );
    let url = s(&session["url"]);
    let link = url.strip_prefix(&w.stack.url).expect("the link points back at this Billy").to_owned();
    assert!(link.starts_with("/portal/"), "{url}");

    // THEN following it opens a portal session for Ada alone, on the portal's page
    let page = call(&w, Method::GET, "/portal", None, None).await;
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.headers()["referrer-policy"], "no-referrer", "the link never leaks as a referrer");
    let followed = call(&w, Method::GET, &link, None, None).await;
    assert_eq!(followed.status(), StatusCode::SEE_OTHER);
    assert_eq!(followed.headers()[LOCATION], "/portal");
    let (cookie, header) = set_cookie(&followed, "billy_portal");
    assert!(header.contains("HttpOnly") && header.contains("Path=/portal"), "{header}");
    let (status, me) = json_of(call(&w, Method::GET, "/portal/api/customer", Some(&cookie), None).await).await;
    assert_eq!(
        (status, me["id"].as_str(), me["name"].as_str()),
        (StatusCode::OK, Some(w.customer.as_str()), Some("Ada"))
    );
    let (_, invoices) = json_of(call(&w, Method::GET, "/portal/api/invoices", Some(&cookie), None).await).await;
    let ids: Vec<String> = invoices["data"].as_array().unwrap().iter().map(|i| s(&i["id"])).collect();
    assert_eq!(ids, [ada_invoice], "Ada's invoices only, never {}", bobs["id"]);
    let shown = &invoices["data"][0];
    assert_eq!((shown["total"].as_i64(), shown["status"].as_str()), (Some(1800), Some("paid")));
    for internal in ["adjustments", "failure_reason", "attempt_count", "settlement"] {
        assert!(shown.get(internal).is_none(), "the portal shows no {internal}: {shown}");
    }
    let (status, summary) = json_of(call(&w, Method::GET, "/portal/api/summary", Some(&cookie), None).await).await;
    assert_eq!((status, summary["customer"].as_str()), (StatusCode::OK, Some(w.customer.as_str())));
    // AND the portal session opens nothing of the API
    let as_session = cookie.replacen("billy_portal=", "billy_session=", 1);
    let response = call(&w, Method::GET, "/v1/customers", Some(&as_session), None).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    // AND without it the portal reads are refused
    let response = call(&w, Method::GET, "/portal/api/customer", None, None).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // WHEN one character of the link changes
    let mut altered = link.clone().into_bytes();
    let at = altered.len() - 10;
    altered[at] = if altered[at] == b'A' { b'B' } else { b'A' };
    let response = call(&w, Method::GET, &String::from_utf8(altered).unwrap(), None, None).await;
    // THEN it is refused with a page saying so, and no session starts
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.headers().get(SET_COOKIE).is_none());
    assert!(response.text().await.unwrap().contains("This link has expired or is not valid"));
    // AND another tenant cannot make a link to Ada
    let (_, other_key, _) = w.api.tenant(&w.stack, "Other").await;
    let (status, _) = w.api.post(&path, &other_key, &json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another tenant cannot make a link to Ada");
    // AND a replayed request answers without the link
    let replay = |key: &'static str| {
        let w = &w;
        let path = path.clone();
        async move {
            let response = client()
                .post(format!("{}/v1{path}", w.stack.url))
                .bearer_auth(&w.key)
                .header("Idempotency-Key", key)
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            json_of(response).await
        }
    };
    let (_, first) = replay("portal-replay-1").await;
    let (status, second) = replay("portal-replay-1").await;
    assert!(first["url"].is_string());
    assert_eq!(
        (status, second["id"].clone(), second["url"].clone()),
        (StatusCode::CREATED, first["id"].clone(), Value::Null)
    );
    // AND lifetimes out of range are refused
    for body in [r#"{"expires_in": 4}"#, r#"{"expires_in": 3601}"#, r#"{"expires": 60}"#] {
        let (status, answer) = w.api.raw(Method::POST, &path, Some(&w.key), Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer}");
    }

    // WHEN a 5-second link is followed after it expired (links expire in real time, never a test
    // clock's, so this waits the seconds out)
    let (_, short) = w.api.raw(Method::POST, &path, Some(&w.key), Some(r#"{"expires_in": 5}"#)).await;
    let expires = chrono::DateTime::parse_from_rfc3339(short["expires_at"].as_str().unwrap()).unwrap();
    let wait = (expires.with_timezone(&chrono::Utc) - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(1100)).await;
    let late = s(&short["url"]).strip_prefix(&w.stack.url).unwrap().to_owned();
    // THEN it is refused
    assert_eq!(call(&w, Method::GET, &late, None, None).await.status(), StatusCode::FORBIDDEN);
}
