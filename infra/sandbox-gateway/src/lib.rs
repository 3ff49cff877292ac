//! The sandbox gateway: a payment gateway that runs on loopback and behaves like a real one. It
//! accepts charges and payouts with idempotency keys, decides outcomes from test instruments
//! (SPEC §9), answers at once and reports the outcome later by signed webhook
//! (`Sandbox-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">`), retrying delivery.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::watch;

pub const SIGNATURE_HEADER: &str = "Sandbox-Signature";

#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub bind: SocketAddr,
    pub api_key: String,
    pub webhook_secret: String,
    /// Where outcomes are sent (Billy's `/v1/webhooks/sandbox`); settable after start.
    pub webhook_url: Option<String>,
    /// How long the gateway "processes" before sending the outcome.
    pub delay: Duration,
}

/// What a test instrument does (SPEC §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Succeed,
    Fail(&'static str),
    SucceedThenDispute,
    /// Refused at once, before any processing.
    Reject(&'static str),
}

fn outcome_for(instrument: &Instrument) -> Outcome {
    match instrument {
        Instrument::Card { token, .. } => match token.as_str() {
            "4242424242424242" => Outcome::Succeed,
            "4000000000000002" => Outcome::Fail("card_declined"),
            "4000000000009995" => Outcome::Fail("insufficient_funds"),
            "4000000000000119" => Outcome::Fail("processing_error"),
            "4000000000000259" => Outcome::SucceedThenDispute,
            _ => Outcome::Reject("invalid_number"),
        },
        Instrument::BankAccount { account_number, .. } => match account_number.as_str() {
            "000123456789" => Outcome::Succeed,
            "000111111116" => Outcome::Fail("account_closed"),
            _ => Outcome::Reject("invalid_account"),
        },
        Instrument::Pix { key } if key == "pix-ok@example.com" => Outcome::Succeed,
        Instrument::Pix { .. } => Outcome::Reject("pix_key_rejected"),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Instrument {
    Card {
        token: String,
        #[serde(default)]
        last4: String,
    },
    BankAccount {
        account_number: String,
        #[serde(default)]
        last4: String,
    },
    Pix {
        key: String,
    },
}

/// A money movement request, as Billy's sandbox adapter sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovementRequest {
    pub idempotency_key: String,
    pub amount: i64,
    pub currency: String,
    pub instrument: Instrument,
    pub transaction: String,
    #[serde(default)]
    pub description: String,
    /// Echoed back in every event about this movement (as real gateways do).
    #[serde(default)]
    pub metadata: serde_json::Map<String, Value>,
}

#[derive(Debug, Clone)]
struct Movement {
    id: String,
    kind: &'static str,
    request: MovementRequest,
    response: Value,
    status_code: u16,
}

#[derive(Debug, Default)]
struct Ledger {
    by_key: HashMap<String, Movement>,
    /// Every event sent, by id, with its body (for redelivery in tests).
    events: HashMap<String, String>,
    deliveries: u64,
}

#[derive(Debug, Clone)]
struct AppState {
    config: Arc<SandboxConfig>,
    webhook_url: Arc<RwLock<Option<String>>>,
    ledger: Arc<Mutex<Ledger>>,
    http: reqwest::Client,
}

/// A started sandbox; `shutdown` stops it.
#[derive(Debug)]
pub struct RunningSandbox {
    pub addr: SocketAddr,
    webhook_url: Arc<RwLock<Option<String>>>,
    ledger: Arc<Mutex<Ledger>>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningSandbox {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_webhook_url(&self, url: &str) {
        *self.webhook_url.write().unwrap_or_else(|p| p.into_inner()) = Some(url.to_owned());
    }

    /// How many distinct charges/payouts were made (one per idempotency key).
    pub fn movements(&self) -> usize {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner()).by_key.len()
    }

    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

pub fn sign(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(format!("{timestamp}.{body}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

pub async fn start(config: SandboxConfig) -> std::io::Result<RunningSandbox> {
    let listener = tokio::net::TcpListener::bind(config.bind).await?;
    let addr = listener.local_addr()?;
    let webhook_url = Arc::new(RwLock::new(config.webhook_url.clone()));
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let state = AppState {
        config: Arc::new(config),
        webhook_url: Arc::clone(&webhook_url),
        ledger: Arc::clone(&ledger),
        http: reqwest::Client::new(),
    };
    let app = Router::new()
        .route("/v1/charges", post(charge))
        .route("/v1/payouts", post(payout))
        .route("/v1/events/{id}/resend", post(resend))
        .route("/v1/stats", get(stats))
        .with_state(state);
    let (stop, mut stopped) = watch::channel(false);
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
            tracing::error!(error = %e, "sandbox gateway failed");
        }
    });
    Ok(RunningSandbox { addr, webhook_url, ledger, stop, task })
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": {"code": code, "message": message}}))).into_response()
}

fn authorized(state: &AppState, headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|k| k == state.config.api_key)
}

async fn charge(State(state): State<AppState>, headers: HeaderMap, Json(req): Json<MovementRequest>) -> Response {
    movement(state, headers, req, "charge").await
}

async fn payout(State(state): State<AppState>, headers: HeaderMap, Json(req): Json<MovementRequest>) -> Response {
    movement(state, headers, req, "payout").await
}

async fn movement(state: AppState, headers: HeaderMap, req: MovementRequest, kind: &'static str) -> Response {
    if !authorized(&state, &headers) {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", "invalid API key");
    }
    if req.amount <= 0 || req.idempotency_key.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "amount must be positive and an idempotency key given",
        );
    }
    if kind == "payout" && matches!(req.instrument, Instrument::Card { .. }) {
        return error(StatusCode::BAD_REQUEST, "invalid_request", "payouts go to bank accounts or pix keys");
    }
    // Same key: the same answer (and no second movement); same key with another body: 422.
    let (movement, new) = {
        let mut ledger = state.ledger.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = ledger.by_key.get(&req.idempotency_key) {
            if existing.request != req || existing.kind != kind {
                return error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "idempotency_mismatch",
                    "this key was used with another request",
                );
            }
            (existing.clone(), false)
        } else {
            let id = format!("{}_{}", if kind == "charge" { "ch" } else { "po" }, uuid::Uuid::new_v4().simple());
            let (status_code, response) = match outcome_for(&req.instrument) {
                Outcome::Reject(code) => (402, json!({"id": id, "status": "failed", "failure_code": code})),
                _ => (200, json!({"id": id, "status": "pending"})),
            };
            let m = Movement { id, kind, request: req.clone(), response, status_code };
            ledger.by_key.insert(req.idempotency_key.clone(), m.clone());
            (m, true)
        }
    };
    if new && movement.status_code == 200 {
        tokio::spawn(settle(state.clone(), movement.clone()));
    }
    (StatusCode::from_u16(movement.status_code).unwrap_or(StatusCode::OK), Json(movement.response)).into_response()
}

/// After the processing delay, report the outcome (and a later dispute for the dispute card).
async fn settle(state: AppState, m: Movement) {
    tokio::time::sleep(state.config.delay).await;
    let outcome = outcome_for(&m.request.instrument);
    let (kind, failure) = match (m.kind, outcome) {
        ("payout", Outcome::Fail(code)) => ("payout.failed", Some(code)),
        ("payout", _) => ("payout.paid", None),
        (_, Outcome::Fail(code)) => ("charge.failed", Some(code)),
        _ => ("charge.succeeded", None),
    };
    send_event(&state, kind, &m, failure).await;
    if outcome == Outcome::SucceedThenDispute && m.kind == "charge" {
        tokio::time::sleep(state.config.delay).await;
        send_event(&state, "charge.dispute.created", &m, Some("fraudulent")).await;
    }
}

async fn send_event(state: &AppState, kind: &str, m: &Movement, failure: Option<&str>) {
    let event_id = format!("evt_{}", uuid::Uuid::new_v4().simple());
    let body = json!({
        "id": event_id,
        "type": kind,
        "created": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "data": {"object": {
            "id": m.id,
            "transaction": m.request.transaction,
            "amount": m.request.amount,
            "currency": m.request.currency,
            "failure_code": failure,
            "metadata": m.request.metadata,
        }},
    })
    .to_string();
    state.ledger.lock().unwrap_or_else(|p| p.into_inner()).events.insert(event_id, body.clone());
    deliver(state, &body).await;
}

/// Posts a signed event, retrying with backoff (5 attempts) until Billy answers 2xx.
async fn deliver(state: &AppState, body: &str) {
    let Some(url) = state.webhook_url.read().unwrap_or_else(|p| p.into_inner()).clone() else {
        tracing::warn!("no webhook URL configured; event not delivered");
        return;
    };
    for attempt in 0..5u32 {
        let t = Utc::now().timestamp();
        let signature = format!("t={t},v1={}", sign(&state.config.webhook_secret, t, body));
        let sent = state
            .http
            .post(&url)
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, signature)
            .body(body.to_owned())
            .send()
            .await;
        state.ledger.lock().unwrap_or_else(|p| p.into_inner()).deliveries += 1;
        if sent.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt))).await;
    }
    tracing::warn!("webhook delivery gave up after 5 attempts");
}

/// Sends an event again, exactly as first sent (a test of de-duplication).
async fn resend(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if !authorized(&state, &headers) {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", "invalid API key");
    }
    let body = state.ledger.lock().unwrap_or_else(|p| p.into_inner()).events.get(&id).cloned();
    match body {
        Some(body) => {
            deliver(&state, &body).await;
            StatusCode::NO_CONTENT.into_response()
        }
        None => error(StatusCode::NOT_FOUND, "not_found", "no such event"),
    }
}

async fn stats(State(state): State<AppState>) -> Response {
    let ledger = state.ledger.lock().unwrap_or_else(|p| p.into_inner());
    let mut events: Vec<Value> = ledger.events.iter().map(|(id, body)| json!({"id": id, "body": body})).collect();
    events.sort_by_key(|e| e["id"].as_str().map(str::to_owned));
    Json(json!({"movements": ledger.by_key.len(), "events": events, "deliveries": ledger.deliveries})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_instruments_decide_outcomes() {
        let card = |n: &str| Instrument::Card { token: n.into(), last4: String::new() };
        assert_eq!(outcome_for(&card("4242424242424242")), Outcome::Succeed);
        assert_eq!(outcome_for(&card("4000000000000002")), Outcome::Fail("card_declined"));
        assert_eq!(outcome_for(&card("4000000000009995")), Outcome::Fail("insufficient_funds"));
        assert_eq!(outcome_for(&card("4000000000000119")), Outcome::Fail("processing_error"));
        assert_eq!(outcome_for(&card("4000000000000259")), Outcome::SucceedThenDispute);
        let bank = |n: &str| Instrument::BankAccount { account_number: n.into(), last4: String::new() };
        assert_eq!(outcome_for(&bank("000123456789")), Outcome::Succeed);
        assert_eq!(outcome_for(&bank("000111111116")), Outcome::Fail("account_closed"));
        assert_eq!(outcome_for(&Instrument::Pix { key: "pix-ok@example.com".into() }), Outcome::Succeed);
        assert_eq!(
            outcome_for(&Instrument::Pix { key: "other@example.com".into() }),
            Outcome::Reject("pix_key_rejected")
        );
    }

    #[test]
    fn signatures_are_hmac_sha256_of_timestamp_dot_body() {
        // HMAC-SHA256("secret", "1700000000.{}"), worked out with `openssl dgst -sha256 -hmac secret`.
        assert_eq!(
            sign("secret", 1_700_000_000, "{}"),
            "b8569b78799ff9e3cbff0fc2d63a33a2b57f3282abd07c37ae5e8e7d79a5f163"
        );
    }
}
