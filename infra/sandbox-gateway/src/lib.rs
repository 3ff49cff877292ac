//! The sandbox gateway: a payment gateway that runs on loopback and behaves like a real one. It
//! vaults test numbers (SPEC §9) and hands out tokens, takes charges, payouts, refunds, voids and
//! disputes against its tokens with idempotency keys, answers at once and reports outcomes later
//! by signed webhook (`Sandbox-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, retried),
//! and lets Billy look a movement up by Billy's transaction id. Test-only controls slow its
//! processing down and decide disputes, so tests can force every branch.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{Datelike, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
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
    /// Where the vault keeps its tokens across restarts (`None`: in memory only).
    pub vault_file: Option<PathBuf>,
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

fn outcome_for(kind: &str, number: &str) -> Outcome {
    match (kind, number) {
        ("card", "4242424242424242") => Outcome::Succeed,
        ("card", "4000000000000002") => Outcome::Fail("card_declined"),
        ("card", "4000000000009995") => Outcome::Fail("insufficient_funds"),
        ("card", "4000000000000119") => Outcome::Fail("processing_error"),
        ("card", "4000000000000259") => Outcome::SucceedThenDispute,
        ("card", _) => Outcome::Reject("invalid_number"),
        ("bank_account", "000123456789") => Outcome::Succeed,
        ("bank_account", "000111111116") => Outcome::Fail("account_closed"),
        // A bank's passing refusal (its systems were down): retried, it may go through.
        ("bank_account", "000222222227") => Outcome::Fail("processing_error"),
        ("bank_account", _) => Outcome::Reject("invalid_account"),
        ("pix", "pix-ok@example.com") => Outcome::Succeed,
        _ => Outcome::Reject("pix_key_rejected"),
    }
}

/// A vaulted number: the only place the sandbox keeps one.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Vaulted {
    kind: String,
    number: String,
    brand: Option<String>,
    last4: String,
    exp_month: Option<u32>,
    exp_year: Option<i32>,
    fingerprint: String,
}

impl Vaulted {
    fn view(&self, id: &str) -> Value {
        json!({"id": id, "type": self.kind, "brand": self.brand, "last4": self.last4,
            "exp_month": self.exp_month, "exp_year": self.exp_year, "fingerprint": self.fingerprint})
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
pub struct MethodRef {
    #[serde(rename = "type")]
    pub kind: String,
    pub token: String,
}

/// A money movement request, as Billy's sandbox adapter sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MovementRequest {
    pub idempotency_key: String,
    pub amount: i64,
    pub currency: String,
    pub payment_method: MethodRef,
    pub transaction: String,
    #[serde(default)]
    pub description: String,
    /// Echoed back in every event about this movement (as real gateways do).
    #[serde(default)]
    pub metadata: serde_json::Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRequest {
    pub idempotency_key: String,
    pub charge: String,
    pub amount: i64,
    pub transaction: String,
    #[serde(default)]
    pub metadata: serde_json::Map<String, Value>,
}

#[derive(Debug, Clone)]
struct Movement {
    id: String,
    kind: &'static str,
    request: Value,
    transaction: String,
    amount: i64,
    currency: String,
    metadata: serde_json::Map<String, Value>,
    /// `pending`, `succeeded`, `failed` or `canceled`.
    status: &'static str,
    failure_code: Option<String>,
    response: Value,
    status_code: u16,
    /// For a charge: what has been refunded of it so far (refunds still pending included).
    refunded: i64,
    /// For a refund: the charge it returns money from.
    charge: Option<String>,
}

#[derive(Debug, Default)]
struct Ledger {
    tokens: HashMap<String, Vaulted>,
    by_key: HashMap<String, String>,
    movements: HashMap<String, Movement>,
    /// Every event sent, by id, with its body (for redelivery in tests).
    events: HashMap<String, String>,
    deliveries: u64,
    /// Test control: processing time of new movements, overriding the configured delay.
    delay_ms: Option<u64>,
    /// Test control: webhooks are held (and sent, in order, once released).
    held: Option<Vec<String>>,
    /// Test control: how many of the next new charges or payouts are made but their answers lost
    /// on the way back (the caller sees a 502; a replay of the same key gets the real answer).
    lose_answers: u32,
    /// Charge and payout requests received, replays of a key included.
    movement_requests: usize,
}

#[derive(Debug, Clone)]
struct AppState {
    config: Arc<SandboxConfig>,
    webhook_url: Arc<RwLock<Option<String>>>,
    ledger: Arc<Mutex<Ledger>>,
    http: reqwest::Client,
}

impl AppState {
    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner())
    }
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

    /// How many distinct charges and payouts were made (one per idempotency key).
    pub fn movements(&self) -> usize {
        let ledger = self.ledger.lock().unwrap_or_else(|p| p.into_inner());
        ledger.movements.values().filter(|m| matches!(m.kind, "charge" | "payout")).count()
    }

    /// How many charge and payout requests reached the sandbox, replays of a key included (a
    /// caller that sent a request again under its key is seen here, not in `movements`).
    pub fn movement_requests(&self) -> usize {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner()).movement_requests
    }

    /// Bodies of every event sent so far.
    pub fn events(&self) -> Vec<String> {
        self.ledger.lock().unwrap_or_else(|p| p.into_inner()).events.values().cloned().collect()
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

fn load_vault(path: Option<&PathBuf>) -> HashMap<String, Vaulted> {
    path.and_then(|p| std::fs::read(p).ok()).and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or_default()
}

fn save_vault(config: &SandboxConfig, tokens: &HashMap<String, Vaulted>) {
    if let Some(path) = &config.vault_file
        && let Ok(bytes) = serde_json::to_vec(tokens)
        && let Err(e) = std::fs::write(path, bytes)
    {
        tracing::warn!(error = %e, "sandbox vault not saved");
    }
}

pub async fn start(config: SandboxConfig) -> std::io::Result<RunningSandbox> {
    let listener = tokio::net::TcpListener::bind(config.bind).await?;
    let addr = listener.local_addr()?;
    let webhook_url = Arc::new(RwLock::new(config.webhook_url.clone()));
    let ledger = Arc::new(Mutex::new(Ledger { tokens: load_vault(config.vault_file.as_ref()), ..Ledger::default() }));
    let state = AppState {
        config: Arc::new(config),
        webhook_url: Arc::clone(&webhook_url),
        ledger: Arc::clone(&ledger),
        http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default(),
    };
    let app = Router::new()
        .route("/v1/tokens", post(vault))
        .route("/v1/tokens/{id}", get(token))
        .route("/v1/charges", post(charge))
        .route("/v1/charges/{id}/cancel", post(cancel))
        .route("/v1/payouts", post(payout))
        .route("/v1/refunds", post(refund))
        .route("/v1/disputes", post(open_dispute))
        .route("/v1/movements", get(lookup))
        .route("/v1/events/{id}/resend", post(resend))
        .route("/v1/_control", post(control))
        .route("/v1/_control/disputes/{charge}/close", post(close_dispute))
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

fn unauthorized(state: &AppState, headers: &HeaderMap) -> Option<Response> {
    let ok = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|k| k == state.config.api_key);
    (!ok).then(|| error(StatusCode::UNAUTHORIZED, "unauthorized", "invalid API key"))
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

fn brand(number: &str) -> Option<String> {
    let b = match number.as_bytes().first() {
        Some(b'4') => "visa",
        Some(b'5') => "mastercard",
        Some(b'3') if number.starts_with("34") || number.starts_with("37") => "amex",
        _ => "unknown",
    };
    Some(b.to_owned())
}

#[derive(Debug, Deserialize)]
struct VaultRequest {
    #[serde(rename = "type")]
    kind: String,
    number: String,
}

async fn vault(State(state): State<AppState>, headers: HeaderMap, Json(req): Json<VaultRequest>) -> Response {
    if let Some(denied) = unauthorized(&state, &headers) {
        return denied;
    }
    if !matches!(req.kind.as_str(), "card" | "bank_account" | "pix") || req.number.is_empty() {
        return error(StatusCode::BAD_REQUEST, "invalid_request", "type must be card, bank_account or pix");
    }
    let card = req.kind == "card";
    let chars: Vec<char> = req.number.chars().collect();
    let vaulted = Vaulted {
        last4: chars[chars.len().saturating_sub(4)..].iter().collect(),
        brand: if card { brand(&req.number) } else { None },
        exp_month: card.then_some(12),
        exp_year: card.then(|| Utc::now().year() + 3),
        fingerprint: sign(&state.config.webhook_secret, 0, &req.number)[..16].to_owned(),
        kind: req.kind,
        number: req.number,
    };
    let id = new_id(match vaulted.kind.as_str() {
        "card" => "tok",
        "bank_account" => "btok",
        _ => "ptok",
    });
    let view = vaulted.view(&id);
    let mut ledger = state.ledger();
    ledger.tokens.insert(id, vaulted);
    save_vault(&state.config, &ledger.tokens);
    Json(view).into_response()
}

async fn token(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(denied) = unauthorized(&state, &headers) {
        return denied;
    }
    match state.ledger().tokens.get(&id) {
        Some(v) => Json(v.view(&id)).into_response(),
        None => error(StatusCode::NOT_FOUND, "token_unknown", "no such token"),
    }
}

async fn charge(State(state): State<AppState>, headers: HeaderMap, Json(req): Json<MovementRequest>) -> Response {
    movement(state, headers, req, "charge").await
}

async fn payout(State(state): State<AppState>, headers: HeaderMap, Json(req): Json<MovementRequest>) -> Response {
    movement(state, headers, req, "payout").await
}

fn processing_delay(state: &AppState) -> Duration {
    state.ledger().delay_ms.map_or(state.config.delay, Duration::from_millis)
}

/// The same key with the same request gives the same answer (and no second movement); the same
/// key with another request is a 422.
fn replay(ledger: &Ledger, key: &str, request: &Value, kind: &str) -> Option<Response> {
    let existing = ledger.movements.get(ledger.by_key.get(key)?)?;
    if existing.request != *request || existing.kind != kind {
        return Some(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_mismatch",
            "this key was used with another request",
        ));
    }
    Some(
        (StatusCode::from_u16(existing.status_code).unwrap_or(StatusCode::OK), Json(existing.response.clone()))
            .into_response(),
    )
}

async fn movement(state: AppState, headers: HeaderMap, req: MovementRequest, kind: &'static str) -> Response {
    if let Some(denied) = unauthorized(&state, &headers) {
        return denied;
    }
    if req.amount <= 0 || req.idempotency_key.is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "amount must be positive and an idempotency key given",
        );
    }
    let request = serde_json::to_value(&req).unwrap_or_default();
    let (movement, outcome, lost) = {
        let mut ledger = state.ledger();
        ledger.movement_requests += 1;
        if let Some(answer) = replay(&ledger, &req.idempotency_key, &request, kind) {
            return answer;
        }
        let Some(vaulted) = ledger.tokens.get(&req.payment_method.token).cloned() else {
            return error(StatusCode::BAD_REQUEST, "token_unknown", "no such token");
        };
        if vaulted.kind != req.payment_method.kind {
            return error(StatusCode::BAD_REQUEST, "invalid_request", "the token is not of this type");
        }
        if kind == "payout" && vaulted.kind == "card" {
            return error(StatusCode::BAD_REQUEST, "invalid_request", "payouts go to bank accounts or pix keys");
        }
        let id = new_id(if kind == "charge" { "ch" } else { "po" });
        let outcome = outcome_for(&vaulted.kind, &vaulted.number);
        let (status_code, status, response, failure) = match outcome {
            Outcome::Reject(code) => {
                (402, "failed", json!({"id": id, "status": "failed", "failure_code": code}), Some(code.to_owned()))
            }
            _ => (200, "pending", json!({"id": id, "status": "pending"}), None),
        };
        let m = Movement {
            id: id.clone(),
            kind,
            request,
            transaction: req.transaction.clone(),
            amount: req.amount,
            currency: req.currency.clone(),
            metadata: req.metadata.clone(),
            status,
            failure_code: failure,
            response,
            status_code,
            refunded: 0,
            charge: None,
        };
        ledger.by_key.insert(req.idempotency_key.clone(), id.clone());
        ledger.movements.insert(id, m.clone());
        let lost = ledger.lose_answers > 0;
        ledger.lose_answers = ledger.lose_answers.saturating_sub(1);
        (m, outcome, lost)
    };
    if movement.status_code == 200 {
        tokio::spawn(settle(state.clone(), movement.id.clone(), outcome));
    }
    if lost {
        return error(StatusCode::BAD_GATEWAY, "connection_lost", "the answer was lost on its way back");
    }
    (StatusCode::from_u16(movement.status_code).unwrap_or(StatusCode::OK), Json(movement.response)).into_response()
}

/// After the processing delay, report the outcome (and a later dispute for the dispute card),
/// unless the movement was voided meanwhile.
async fn settle(state: AppState, id: String, outcome: Outcome) {
    tokio::time::sleep(processing_delay(&state)).await;
    let settled = {
        let mut ledger = state.ledger();
        let Some(m) = ledger.movements.get_mut(&id) else { return };
        if m.status != "pending" {
            return;
        }
        let (status, failure) = match outcome {
            Outcome::Fail(code) => ("failed", Some(code.to_owned())),
            _ => ("succeeded", None),
        };
        m.status = status;
        m.failure_code = failure;
        m.clone()
    };
    let kind = match (settled.kind, settled.status) {
        ("payout", "failed") => "payout.failed",
        ("payout", _) => "payout.paid",
        (_, "failed") => "charge.failed",
        _ => "charge.succeeded",
    };
    send_event(&state, kind, &settled, json!({})).await;
    if outcome == Outcome::SucceedThenDispute && settled.kind == "charge" {
        tokio::time::sleep(processing_delay(&state)).await;
        send_event(&state, "charge.dispute.created", &settled, json!({"dispute_reason": "fraudulent"})).await;
    }
}

/// Voids a charge still being processed: no outcome will follow. A charge that already succeeded
/// cannot be voided (409 `charge_already_succeeded`): refund it instead.
async fn cancel(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(denied) = unauthorized(&state, &headers) {
        return denied;
    }
    let canceled = {
        let mut ledger = state.ledger();
        let Some(m) = ledger.movements.get_mut(&id) else {
            return error(StatusCode::NOT_FOUND, "not_found", "no such charge");
        };
        match m.status {
            "pending" => {
                m.status = "canceled";
                m.clone()
            }
            "canceled" => return Json(json!({"id": id, "status": "canceled"})).into_response(),
            "succeeded" => {
                return error(StatusCode::CONFLICT, "charge_already_succeeded", "the charge succeeded; refund it");
            }
            _ => return error(StatusCode::CONFLICT, "charge_already_failed", "the charge failed; nothing to void"),
        }
    };
    send_event(&state, "charge.canceled", &canceled, json!({})).await;
    Json(json!({"id": id, "status": "canceled"})).into_response()
}

/// Refunds part or all of a succeeded charge; the outcome comes by webhook. The sum of refunds
/// never passes the amount charged.
async fn refund(State(state): State<AppState>, headers: HeaderMap, Json(req): Json<RefundRequest>) -> Response {
    if let Some(denied) = unauthorized(&state, &headers) {
        return denied;
    }
    let request = serde_json::to_value(&req).unwrap_or_default();
    let refund = {
        let mut ledger = state.ledger();
        if let Some(answer) = replay(&ledger, &req.idempotency_key, &request, "refund") {
            return answer;
        }
        let Some(charge) = ledger.movements.get_mut(&req.charge).filter(|m| m.kind == "charge") else {
            return error(StatusCode::BAD_REQUEST, "charge_unknown", "no such charge");
        };
        if charge.status != "succeeded" {
            return error(StatusCode::BAD_REQUEST, "charge_not_succeeded", "only a succeeded charge can be refunded");
        }
        if req.amount <= 0 || charge.refunded + req.amount > charge.amount {
            return error(StatusCode::BAD_REQUEST, "amount_too_large", "refunds would exceed the amount charged");
        }
        charge.refunded += req.amount;
        let currency = charge.currency.clone();
        let id = new_id("re");
        let m = Movement {
            id: id.clone(),
            kind: "refund",
            request,
            transaction: req.transaction.clone(),
            amount: req.amount,
            currency,
            metadata: req.metadata.clone(),
            status: "pending",
            failure_code: None,
            response: json!({"id": id, "status": "pending", "charge": req.charge}),
            status_code: 200,
            refunded: 0,
            charge: Some(req.charge.clone()),
        };
        ledger.by_key.insert(req.idempotency_key.clone(), id.clone());
        ledger.movements.insert(id, m.clone());
        m
    };
    let settle_state = state.clone();
    let id = refund.id.clone();
    tokio::spawn(async move {
        tokio::time::sleep(processing_delay(&settle_state)).await;
        let done = {
            let mut ledger = settle_state.ledger();
            let Some(m) = ledger.movements.get_mut(&id) else { return };
            m.status = "succeeded";
            m.clone()
        };
        send_event(&settle_state, "refund.succeeded", &done, json!({"charge": done.charge})).await;
    });
    Json(refund.response).into_response()
}

#[derive(Debug, Deserialize)]
struct DisputeRequest {
    charge: String,
    #[serde(default)]
    reason: Option<String>,
}

/// The sandbox plays the card network: a cardholder's claim opens a dispute on a succeeded charge.
async fn open_dispute(State(state): State<AppState>, headers: HeaderMap, Json(req): Json<DisputeRequest>) -> Response {
    if let Some(denied) = unauthorized(&state, &headers) {
        return denied;
    }
    let charge = state.ledger().movements.get(&req.charge).filter(|m| m.kind == "charge").cloned();
    let Some(charge) = charge.filter(|c| c.status == "succeeded") else {
        return error(StatusCode::BAD_REQUEST, "charge_not_succeeded", "only a succeeded charge can be disputed");
    };
    let reason = req.reason.unwrap_or_else(|| "fraudulent".into());
    let dispute = json!({"dispute_reason": reason});
    let background = state.clone();
    tokio::spawn(async move {
        tokio::time::sleep(processing_delay(&background)).await;
        send_event(&background, "charge.dispute.created", &charge, dispute).await;
    });
    Json(json!({"charge": req.charge, "status": "needs_response"})).into_response()
}

#[derive(Debug, Deserialize)]
struct CloseDispute {
    outcome: String,
}

/// Test control: the card network decides a dispute.
async fn close_dispute(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(charge): Path<String>,
    Json(req): Json<CloseDispute>,
) -> Response {
    if let Some(denied) = unauthorized(&state, &headers) {
        return denied;
    }
    let kind = match req.outcome.as_str() {
        "won" => "charge.dispute.won",
        "lost" => "charge.dispute.lost",
        _ => return error(StatusCode::BAD_REQUEST, "invalid_request", "outcome must be won or lost"),
    };
    let Some(m) = state.ledger().movements.get(&charge).cloned() else {
        return error(StatusCode::NOT_FOUND, "not_found", "no such charge");
    };
    send_event(&state, kind, &m, json!({})).await;
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Control {
    /// How long new movements are processed before their outcome is sent.
    processing_delay_ms: Option<u64>,
    /// `true`: webhooks are held; `false`: the held ones go out, in order, and new ones flow.
    hold_webhooks: Option<bool>,
    /// The next this many new charges or payouts are made, but the caller gets a 502 instead of
    /// their answer.
    lose_answers: Option<u32>,
}

/// Test controls: slow processing down (so a void can win the race against a charge), hold
/// webhooks (so a charge can succeed here before Billy hears of it), or lose answers (so Billy
/// cannot know whether a charge was made).
async fn control(State(state): State<AppState>, headers: HeaderMap, Json(req): Json<Control>) -> Response {
    if let Some(denied) = unauthorized(&state, &headers) {
        return denied;
    }
    let released = {
        let mut ledger = state.ledger();
        if req.processing_delay_ms.is_some() {
            ledger.delay_ms = req.processing_delay_ms;
        }
        if let Some(lost) = req.lose_answers {
            ledger.lose_answers = lost;
        }
        match req.hold_webhooks {
            Some(true) => {
                ledger.held.get_or_insert_with(Vec::new);
                Vec::new()
            }
            Some(false) => ledger.held.take().unwrap_or_default(),
            None => Vec::new(),
        }
    };
    for body in released {
        deliver(&state, &body).await;
    }
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Debug, Deserialize)]
struct LookupQuery {
    transaction: String,
}

/// Finds a movement by Billy's transaction id (its metadata), as Stripe's search does.
async fn lookup(State(state): State<AppState>, headers: HeaderMap, Query(q): Query<LookupQuery>) -> Response {
    if let Some(denied) = unauthorized(&state, &headers) {
        return denied;
    }
    let found = state.ledger().movements.values().find(|m| m.transaction == q.transaction).cloned();
    match found {
        Some(m) => Json(json!({"id": m.id, "status": m.status, "failure_code": m.failure_code})).into_response(),
        None => error(StatusCode::NOT_FOUND, "not_found", "no movement for this transaction"),
    }
}

async fn send_event(state: &AppState, kind: &str, m: &Movement, extra: Value) {
    let event_id = new_id("evt");
    let mut object = json!({
        "id": m.id,
        "transaction": m.transaction,
        "amount": m.amount,
        "currency": m.currency,
        "status": m.status,
        "failure_code": m.failure_code,
        "metadata": m.metadata,
    });
    if let (Some(o), Some(extra)) = (object.as_object_mut(), extra.as_object()) {
        o.extend(extra.clone());
    }
    let body = json!({
        "id": event_id,
        "type": kind,
        "created": Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "data": {"object": object},
    })
    .to_string();
    {
        let mut ledger = state.ledger();
        ledger.events.insert(event_id, body.clone());
        if let Some(held) = ledger.held.as_mut() {
            held.push(body);
            return;
        }
    }
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
        state.ledger().deliveries += 1;
        if sent.is_ok_and(|r| r.status().is_success()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt))).await;
    }
    tracing::warn!("webhook delivery gave up after 5 attempts");
}

/// Sends an event again, exactly as first sent (a test of de-duplication).
async fn resend(State(state): State<AppState>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Some(denied) = unauthorized(&state, &headers) {
        return denied;
    }
    let body = state.ledger().events.get(&id).cloned();
    match body {
        Some(body) => {
            deliver(&state, &body).await;
            StatusCode::NO_CONTENT.into_response()
        }
        None => error(StatusCode::NOT_FOUND, "not_found", "no such event"),
    }
}

async fn stats(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(denied) = unauthorized(&state, &headers) {
        return denied;
    }
    let ledger = state.ledger();
    let mut events: Vec<Value> = ledger.events.iter().map(|(id, body)| json!({"id": id, "body": body})).collect();
    events.sort_by_key(|e| e["id"].as_str().map(str::to_owned));
    let movements = ledger.movements.values().filter(|m| matches!(m.kind, "charge" | "payout")).count();
    Json(json!({"movements": movements, "events": events, "deliveries": ledger.deliveries})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_instruments_decide_outcomes() {
        assert_eq!(outcome_for("card", "4242424242424242"), Outcome::Succeed);
        assert_eq!(outcome_for("card", "4000000000000002"), Outcome::Fail("card_declined"));
        assert_eq!(outcome_for("card", "4000000000009995"), Outcome::Fail("insufficient_funds"));
        assert_eq!(outcome_for("card", "4000000000000119"), Outcome::Fail("processing_error"));
        assert_eq!(outcome_for("card", "4000000000000259"), Outcome::SucceedThenDispute);
        assert_eq!(outcome_for("bank_account", "000123456789"), Outcome::Succeed);
        assert_eq!(outcome_for("bank_account", "000111111116"), Outcome::Fail("account_closed"));
        assert_eq!(outcome_for("bank_account", "000222222227"), Outcome::Fail("processing_error"));
        assert_eq!(outcome_for("pix", "pix-ok@example.com"), Outcome::Succeed);
        assert_eq!(outcome_for("pix", "other@example.com"), Outcome::Reject("pix_key_rejected"));
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
