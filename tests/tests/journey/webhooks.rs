//! Outgoing webhooks: an endpoint on a local receiver gets the events it asked for, signed so the
//! official Stripe library accepts them, through a secret rotation; a failing endpoint is retried
//! with growing gaps, dead-lettered, and delivered by a manual retry; live endpoints may not point
//! at private addresses; the secret is shown once and stored nowhere in clear.

use super::{World, s};
use billy_e2e::peers::stripe_construct_event;
use billy_e2e::{TestStack, error_code, table_text};
use billy_local::testing::StackOptions;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request a receiver got.
#[derive(Debug, Clone)]
pub(super) struct Hit {
    at: Instant,
    signature: String,
    body: String,
}

/// A tenant's webhook receiver on 127.0.0.1, answering with a status the test sets.
pub(super) struct Receiver {
    pub(super) url: String,
    hits: Arc<Mutex<Vec<Hit>>>,
    status: Arc<AtomicU16>,
    server: tokio::task::JoinHandle<()>,
}

impl Receiver {
    pub(super) async fn start(status: u16) -> Self {
        let hits: Arc<Mutex<Vec<Hit>>> = Arc::default();
        let status = Arc::new(AtomicU16::new(status));
        let (h, st) = (hits.clone(), status.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
                let (h, st) = (h.clone(), st.clone());
                async move {
                    let signature =
                        headers.get("billy-signature").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                    h.lock().unwrap().push(Hit { at: Instant::now(), signature, body });
                    axum::http::StatusCode::from_u16(st.load(Ordering::SeqCst)).unwrap()
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.ok();
        });
        Self { url, hits, status, server }
    }

    pub(super) fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }

    /// Waits (bounded) until the receiver has had `n` requests.
    pub(super) async fn has(&self, n: usize) -> Vec<Hit> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let hits = self.hits();
            if hits.len() >= n {
                return hits;
            }
            assert!(Instant::now() < deadline, "the receiver got {} requests, not {n}", hits.len());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn stack() -> TestStack {
    // Retries 1 s then 2 s apart instead of over three days.
    let parameters = BTreeMap::from([("WebhookRetryGaps".to_owned(), "1,2".to_owned())]);
    TestStack::start_custom(StackOptions { parameters, ..StackOptions::default() }).await
}

impl World {
    pub(super) async fn endpoint(&self, url: &str, events: &[&str]) -> Value {
        let (status, e) =
            self.api.post("/webhook_endpoints", &self.key, &json!({"url": url, "enabled_events": events})).await;
        assert_eq!(status, StatusCode::CREATED, "{e}");
        e
    }

    async fn deliveries(&self, endpoint: &str) -> Vec<Value> {
        let (status, list) = self.api.get(&format!("/webhook_endpoints/{endpoint}/deliveries"), &self.key).await;
        assert_eq!(status, StatusCode::OK, "{list}");
        list["data"].as_array().unwrap().clone()
    }
}

pub(super) fn body(hit: &Hit) -> Value {
    serde_json::from_str(&hit.body).unwrap()
}

#[tokio::test]
async fn an_endpoint_gets_the_events_it_asked_for_signed_so_stripes_library_accepts_them_through_a_rotation() {
    // GIVEN an endpoint on a local receiver that wants invoice.paid only
    let w = World::on(stack().await, "2026-05-01T00:00:00Z", "4242424242424242").await;
    let receiver = Receiver::start(200).await;
    let endpoint = w.endpoint(&receiver.url, &["invoice.paid"]).await;
    let (id, secret) = (s(&endpoint["id"]), s(&endpoint["secret"]));
    assert!(id.starts_with("we_") && secret.starts_with("whsec_"), "{endpoint}");
    // THEN its secret is shown this once: not on reading it, and stored nowhere in clear
    let (_, read) = w.api.get(&format!("/webhook_endpoints/{id}"), &w.key).await;
    let (_, listed) = w.api.get("/webhook_endpoints", &w.key).await;
    assert_eq!((read["url"].as_str(), read["status"].as_str()), (Some(receiver.url.as_str()), Some("enabled")));
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(1));
    for table in [w.stack.tables().main, w.stack.tables().audit] {
        for item in table_text(&w.stack.aws, &table).await {
            assert!(!item.contains(&secret), "the signing secret is stored in clear: {item}");
        }
    }
    assert!(!read.to_string().contains(&secret) && !listed.to_string().contains(&secret));
    // AND another tenant cannot see it
    let (_, other, _) = w.api.tenant(&w.stack, "Other").await;
    assert_eq!(w.api.get(&format!("/webhook_endpoints/{id}"), &other).await.0, StatusCode::NOT_FOUND);

    // WHEN an invoice is paid
    let invoice = w.paid_one_off(1999).await;
    // THEN the receiver gets invoice.paid, once, signed with the endpoint's secret
    let hit = receiver.has(1).await.remove(0);
    let event = body(&hit);
    assert_eq!(
        (event["type"].as_str(), event["data"]["object"]["id"].as_str()),
        (Some("invoice.paid"), Some(invoice.as_str()))
    );
    assert_eq!((event["object"].as_str(), event["livemode"].as_bool()), (Some("event"), Some(false)));
    assert!(s(&event["id"]).starts_with("evt_") && event["created"].is_i64(), "{event}");
    let verified = stripe_construct_event(&hit.body, &hit.signature, &secret).await;
    assert_eq!(verified, Ok((s(&event["id"]), "invoice.paid".to_owned())));
    assert!(stripe_construct_event(&hit.body, &hit.signature, "whsec_wrong").await.is_err());
    let tampered = hit.body.replace("1999", "1");
    assert!(stripe_construct_event(&tampered, &hit.signature, &secret).await.is_err());
    // AND the delivery shows the attempt and its answer
    w.queues_drained(&["DeliveryQueue"]).await;
    let deliveries = w.deliveries(&id).await;
    assert_eq!(deliveries.len(), 1, "only invoice.paid was wanted: {deliveries:?}");
    let d = &deliveries[0];
    assert_eq!(
        (d["status"].as_str(), d["attempt_count"].as_u64(), d["last_response_code"].as_u64(), d["event"].as_str()),
        (Some("delivered"), Some(1), Some(200), event["id"].as_str())
    );
    assert_eq!(receiver.hits().len(), 1, "invoice.created and invoice.finalized were not wanted");

    // WHEN the secret is rotated with an hour's overlap
    let (status, rotated) = w
        .api
        .post(&format!("/webhook_endpoints/{id}/rotate_secret"), &w.key, &json!({"expire_previous_in_hours": 1}))
        .await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let new_secret = s(&rotated["secret"]);
    assert!(new_secret != secret && rotated["previous_secret_expires_at"].is_string(), "{rotated}");
    w.paid_one_off(2500).await;
    // THEN the next delivery is accepted with either secret
    let hit = receiver.has(2).await.remove(1);
    assert_eq!(hit.signature.matches("v1=").count(), 2, "{}", hit.signature);
    for key in [&secret, &new_secret] {
        assert!(
            stripe_construct_event(&hit.body, &hit.signature, key).await.is_ok(),
            "refused with one of the secrets"
        );
    }
    // AND its rotation is in the endpoint's audit trail, without either secret
    let trail = w.trail(&id).await;
    for action in ["webhook_endpoint.created", "webhook_endpoint.secret_rotated"] {
        assert!(trail.iter().any(|a| a == action), "{action} missing from {trail:?}");
    }

    // WHEN it is deleted
    let (status, deleted) = w.api.raw(Method::DELETE, &format!("/webhook_endpoints/{id}"), Some(&w.key), None).await;
    assert_eq!((status, deleted["deleted"].as_bool()), (StatusCode::OK, Some(true)), "{deleted}");
    // THEN it is gone, and a later paid invoice is not sent to it
    assert_eq!(w.api.get(&format!("/webhook_endpoints/{id}"), &w.key).await.0, StatusCode::NOT_FOUND);
    w.paid_one_off(3000).await;
    w.queues_drained(&["DeliveryQueue"]).await;
    assert_eq!(receiver.hits().len(), 2);
    w.stack.stop().await;
}

#[tokio::test]
async fn a_failing_endpoint_is_retried_with_growing_gaps_then_dead_lettered_and_a_manual_retry_delivers_it() {
    // GIVEN an endpoint whose receiver answers 500
    let w = World::on(stack().await, "2026-05-01T00:00:00Z", "4242424242424242").await;
    let receiver = Receiver::start(500).await;
    let endpoint = s(&w.endpoint(&receiver.url, &["*"]).await["id"]);
    // WHEN an invoice is paid and the sweeper runs as time passes (every 300 ms here)
    let invoice = w.paid_one_off(1999).await;
    let paid_event = |h: &Hit| body(h)["type"] == "invoice.paid";
    let deadline = Instant::now() + Duration::from_secs(60);
    let dead = loop {
        let d = w.deliveries(&endpoint).await;
        let paid = d.iter().find(|d| d["event_type"] == "invoice.paid").cloned();
        if let Some(paid) = paid.filter(|p| p["status"] == "dead_lettered") {
            break paid;
        }
        assert!(Instant::now() < deadline, "never dead-lettered: {d:?}");
        w.stack.run_scheduled("sweep-webhooks").await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    // THEN it was tried three times (the first, then 1 s and 2 s later): growing gaps
    let tries: Vec<Hit> = receiver.hits().into_iter().filter(paid_event).collect();
    assert_eq!(tries.len(), 3, "{tries:?}");
    let (first, second) = (tries[1].at - tries[0].at, tries[2].at - tries[1].at);
    assert!(
        first >= Duration::from_secs(1) && second >= Duration::from_secs(2) && second > first,
        "{first:?} {second:?}"
    );
    // AND every try carried the same event (its id lets the receiver de-duplicate)
    assert!(tries.iter().all(|t| body(t)["id"] == body(&tries[0])["id"]));
    assert_eq!(body(&tries[0])["data"]["object"]["id"].as_str(), Some(invoice.as_str()));
    // AND the dead letter is visible with each attempt and its answer
    let codes: Vec<u64> =
        dead["attempts"].as_array().unwrap().iter().filter_map(|a| a["status_code"].as_u64()).collect();
    assert_eq!((codes, dead["next_attempt_at"].is_null()), (vec![500, 500, 500], true), "{dead}");

    // WHEN the receiver is fixed and the delivery is retried by hand
    receiver.status.store(200, Ordering::SeqCst);
    let path = format!("/webhook_endpoints/{endpoint}/deliveries/{}/retry", s(&dead["id"]));
    let (status, retried) = w.api.post(&path, &w.key, &json!({})).await;
    assert_eq!((status, retried["status"].as_str()), (StatusCode::ACCEPTED, Some("pending")), "{retried}");
    // THEN it is delivered, the attempt marked manual
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = w.deliveries(&endpoint).await.into_iter().find(|d| d["id"] == dead["id"]).unwrap();
        if d["status"] == "delivered" {
            let last = d["attempts"].as_array().unwrap().last().unwrap().clone();
            assert_eq!(
                (last["status_code"].as_u64(), last["manual"].as_bool(), d["attempt_count"].as_u64()),
                (Some(200), Some(true), Some(4))
            );
            break;
        }
        assert!(Instant::now() < deadline, "the manual retry never delivered: {d}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(receiver.hits().into_iter().filter(paid_event).count(), 4);
    // AND an unknown delivery cannot be retried
    let (status, _) = w
        .api
        .post(
            &format!("/webhook_endpoints/{endpoint}/deliveries/wd_00000000000000000000000000/retry"),
            &w.key,
            &json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    w.stack.stop().await;
}

#[tokio::test]
async fn a_live_endpoint_must_be_https_and_may_not_point_at_private_loopback_or_link_local_addresses() {
    let stack = TestStack::start().await;
    let api = billy_e2e::Api::new(&stack);
    let (_, _, live) = api.tenant(&stack, "Acme").await;
    let wanted = json!(["invoice.paid"]);
    for (url, code) in [
        ("https://127.0.0.1/hook", "url_not_public"),
        ("https://10.0.0.1/hook", "url_not_public"),
        ("https://169.254.169.254/latest/meta-data", "url_not_public"),
        ("https://[::1]/hook", "url_not_public"),
        // a name that resolves to a loopback address
        ("https://localhost/hook", "url_not_public"),
        ("http://hooks.example.com/hook", "url_not_https"),
        ("https://user:pass@hooks.example.com/hook", "url_invalid"),
    ] {
        let (status, err) = api.post("/webhook_endpoints", &live, &json!({"url": url, "enabled_events": wanted})).await;
        assert_eq!((status, error_code(&err)), (StatusCode::BAD_REQUEST, code.to_owned()), "{url}: {err}");
    }
    let (status, err) = api
        .post(
            "/webhook_endpoints",
            &live,
            &json!({"url": "https://hooks.example.com/h", "enabled_events": ["invoice.nope"]}),
        )
        .await;
    assert_eq!((status, error_code(&err).as_str()), (StatusCode::BAD_REQUEST, "enabled_events_invalid"), "{err}");
    // AND nothing was stored
    let (_, listed) = api.get("/webhook_endpoints", &live).await;
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(0), "{listed}");
    stack.stop().await;
}

#[tokio::test]
async fn a_renewal_is_announced_to_an_endpoint_three_days_ahead_on_the_test_clock() {
    // GIVEN an endpoint that wants invoice.upcoming and invoice.created, and a monthly
    // subscription from 1 May
    let w = World::on(stack().await, "2026-05-01T00:00:00Z", "4242424242424242").await;
    let receiver = Receiver::start(200).await;
    w.endpoint(&receiver.url, &["invoice.upcoming", "invoice.created"]).await;
    let sub = w.subscribe(&w.plan(1000).await).await;
    w.settled().await;
    // THEN the first invoice's creation is heard, as the draft it was before it was finalized in
    // the same step (the journal stores both facts as one item)
    let created = body(&receiver.has(1).await[0]);
    assert_eq!(created["type"].as_str(), Some("invoice.created"), "{created}");
    assert_eq!(created["data"]["object"]["subscription"], sub["id"], "{created}");
    assert_eq!(created["data"]["object"]["status"].as_str(), Some("draft"), "{created}");
    // WHEN the clock reaches 28 May, nothing more is announced yet
    w.advance("2026-05-28T12:00:00Z").await;
    w.queues_drained(&["DeliveryQueue"]).await;
    assert_eq!(receiver.hits().len(), 1, "announced too early");
    // WHEN it reaches 29 May, three days before the 1 June renewal
    w.advance("2026-05-29T12:00:00Z").await;
    // THEN the endpoint hears invoice.upcoming for the subscription, dated 29 May 00:00
    let event = body(&receiver.has(2).await[1]);
    assert_eq!(event["type"].as_str(), Some("invoice.upcoming"), "{event}");
    assert_eq!(event["data"]["object"]["id"], sub["id"]);
    let notice = chrono::DateTime::parse_from_rfc3339("2026-05-29T00:00:00Z").unwrap().timestamp();
    assert_eq!(event["created"].as_i64(), Some(notice), "{event}");
    w.stack.stop().await;
}
