//! A function's real binary, started as Lambda starts it: its template configuration resolved to
//! the local stack, the local stack's endpoints and test credentials, and the runtime's variables;
//! the events Lambda hands it, as JSON; and a minimal Runtime API that serves one invocation and
//! times the binary's first poll and first answer (the cold-start bench). The runtime test uses
//! cargo-lambda's emulator instead, an implementation of the protocol that is not ours.

use crate::provision::{ACCOUNT, Provisioned, REGION};
use crate::runner::function_config;
use crate::template::FunctionDef;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::Notify;

/// Where a binary of this workspace is: `target/<profile>/<name>` (or under `CARGO_TARGET_DIR`).
pub fn binary_path(profile: &str, name: &str) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| FsPath::new(env!("CARGO_MANIFEST_DIR")).join("../../target"), PathBuf::from)
        .join(profile)
        .join(name)
}

/// The variables the Lambda runtime gives every function, for `function` polling `runtime_api`.
pub fn runtime_vars(function: &str, runtime_api: &str) -> BTreeMap<String, String> {
    [
        ("AWS_LAMBDA_RUNTIME_API", runtime_api),
        ("AWS_LAMBDA_FUNCTION_NAME", function),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// Stands in for a gateway base left empty, which would send a binary to the real gateway.
const NOWHERE: &str = "http://127.0.0.1:9";

/// The environment of `def`'s binary against the local stack, known to the Runtime API at
/// `runtime_api` (a URL such as `http://127.0.0.1:9001` or cargo-lambda's
/// `http://127.0.0.1:9001/.rt/<function>`) as `function`. Only loopback addresses are ever handed
/// over: the AWS endpoints, the sandbox gateway and every gateway `*_BASE` (an empty one, which
/// would mean the real gateway, becomes a closed loopback port).
pub fn binary_env(
    def: &FunctionDef,
    provisioned: &Provisioned,
    function: &str,
    runtime_api: &str,
) -> Result<BTreeMap<String, String>, String> {
    let mut env = function_config(def, provisioned)?.vars().clone();
    for var in ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB"] {
        let url = std::env::var(var).map_err(|_| format!("{var} is not set (infra/local/env.sh sets it)"))?;
        env.insert(var.to_owned(), url);
    }
    for (name, value) in &mut env {
        if name.ends_with("_BASE") && value.is_empty() {
            NOWHERE.clone_into(value);
        }
        // (Queue URLs are names sent to the SQS endpoint, never connected to.)
        let address = name.ends_with("_BASE") || name == "SANDBOX_URL" || name.starts_with("AWS_ENDPOINT_URL");
        if address && !value.is_empty() && !value.starts_with("http://127.0.0.1:") {
            return Err(format!("{name} must be a loopback address, not {value}"));
        }
    }
    env.insert("AWS_REGION".into(), REGION.into());
    env.insert("AWS_ACCESS_KEY_ID".into(), "test".into());
    env.insert("AWS_SECRET_ACCESS_KEY".into(), "test".into());
    env.extend(runtime_vars(function, runtime_api));
    Ok(env)
}

/// An API Gateway HTTP API (payload 2.0) request for `route` ("GET /v1/customers/{id}") with its
/// path parameters, as Lambda hands it over.
pub fn http_event(route: &str, params: &[(&str, &str)], token: Option<&str>, body: Option<&Value>) -> Value {
    let (method, template) = route.split_once(' ').unwrap_or(("GET", route));
    let mut path = template.to_owned();
    for (name, value) in params {
        path = path.replace(&format!("{{{name}}}"), value);
    }
    let mut headers = json!({"content-type": "application/json", "host": "127.0.0.1", "user-agent": "billy-local"});
    if let Some(token) = token {
        headers["authorization"] = json!(format!("Bearer {token}"));
    }
    let path_parameters: serde_json::Map<String, Value> =
        params.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
    json!({
        "version": "2.0",
        "routeKey": route,
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "pathParameters": if params.is_empty() { Value::Null } else { Value::Object(path_parameters) },
        "requestContext": {
            "accountId": ACCOUNT,
            "apiId": "local",
            "domainName": "127.0.0.1",
            "domainPrefix": "local",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "billy-local"},
            "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": route,
            "stage": "$default",
            "time": chrono::Utc::now().format("%d/%b/%Y:%H:%M:%S +0000").to_string(),
            "timeEpoch": chrono::Utc::now().timestamp_millis(),
        },
        "body": body.map(Value::to_string),
        "isBase64Encoded": false,
    })
}

/// An SQS batch from the queue `queue_arn`, one record per body, each on its first delivery.
pub fn sqs_event(queue_arn: &str, bodies: &[&str]) -> Value {
    let sent = chrono::Utc::now().timestamp_millis().to_string();
    let records: Vec<Value> = bodies
        .iter()
        .map(|body| {
            json!({
                "messageId": uuid::Uuid::new_v4().to_string(),
                "receiptHandle": "billy-local",
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": sent,
                               "SenderId": "billy-local", "ApproximateFirstReceiveTimestamp": sent},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            })
        })
        .collect();
    json!({ "Records": records })
}

/// The event an EventBridge schedule delivers.
pub fn scheduled_event() -> Value {
    json!({
        "version": "0",
        "id": uuid::Uuid::new_v4().to_string(),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT,
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "region": REGION,
        "resources": [format!("arn:aws:events:{REGION}:{ACCOUNT}:rule/billy-local")],
        "detail": {},
    })
}

/// One INSERT record of a DynamoDB stream (`NEW_IMAGE`), `new_image` in DynamoDB JSON.
pub fn stream_record(sequence: &str, new_image: Value) -> Value {
    json!({
        "eventID": sequence,
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": REGION,
        "dynamodb": {
            "ApproximateCreationDateTime": chrono::Utc::now().timestamp(),
            "Keys": {"pk": {"S": "billy-local"}, "sk": {"S": sequence}},
            "NewImage": new_image,
            "SequenceNumber": sequence,
            "SizeBytes": 100,
            "StreamViewType": "NEW_IMAGE",
        },
        "eventSourceARN": format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/billy-local/stream/2026-01-01T00:00:00.000"),
    })
}

/// What a `RuntimeApi` saw of its one invocation.
#[derive(Debug, Clone, Default)]
pub struct Invocation {
    /// When the binary first asked for an event.
    pub first_poll: Option<Instant>,
    /// When it answered, and with what (`Err` for an error it reported).
    pub answer: Option<(Instant, Result<Value, String>)>,
}

#[derive(Debug)]
struct Shared {
    event: Mutex<Option<Value>>,
    seen: Mutex<Invocation>,
    answered: Notify,
}

/// A Runtime API on a loopback port that hands out one event, then holds every later poll; enough
/// to time a binary's start (process start → first poll) and first answer.
#[derive(Debug)]
pub struct RuntimeApi {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

const REQUEST_ID: &str = "00000000-0000-4000-8000-000000000001";

impl RuntimeApi {
    pub async fn start(event: Value) -> std::io::Result<Self> {
        let shared =
            Arc::new(Shared { event: Mutex::new(Some(event)), seen: Mutex::default(), answered: Notify::new() });
        let app = axum::Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route("/2018-06-01/runtime/invocation/{id}/response", post(response))
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, shared, server })
    }

    /// The value of `AWS_LAMBDA_RUNTIME_API` for a binary polling this API.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Waits for the answer (or `timeout`), then returns what was seen.
    pub async fn invocation(&self, timeout: std::time::Duration) -> Invocation {
        let answered = self.shared.answered.notified();
        if self.seen().answer.is_none() {
            let _ = tokio::time::timeout(timeout, answered).await;
        }
        self.seen()
    }

    fn seen(&self) -> Invocation {
        self.shared.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn record(shared: &Shared, f: impl FnOnce(&mut Invocation)) {
    f(&mut shared.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
}

async fn next(State(shared): State<Arc<Shared>>) -> (StatusCode, HeaderMap, String) {
    record(&shared, |s| {
        s.first_poll.get_or_insert_with(Instant::now);
    });
    let event = shared.event.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
    let Some(event) = event else {
        // One invocation only: later polls wait until the binary is stopped.
        std::future::pending::<()>().await;
        return (StatusCode::NO_CONTENT, HeaderMap::new(), String::new());
    };
    let deadline = chrono::Utc::now().timestamp_millis() + 30_000;
    let mut headers = HeaderMap::new();
    headers.insert("lambda-runtime-aws-request-id", HeaderValue::from_static(REQUEST_ID));
    headers.insert("lambda-runtime-deadline-ms", HeaderValue::from(deadline));
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        HeaderValue::from_str(&format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:_"))
            .unwrap_or(HeaderValue::from_static("_")),
    );
    headers.insert("lambda-runtime-trace-id", HeaderValue::from_static("Root=1-00000000-000000000000000000000001"));
    (StatusCode::OK, headers, event.to_string())
}

fn answered(shared: &Shared, answer: Result<Value, String>) -> StatusCode {
    record(shared, |s| s.answer = Some((Instant::now(), answer)));
    shared.answered.notify_waiters();
    StatusCode::ACCEPTED
}

async fn response(State(shared): State<Arc<Shared>>, Path(_id): Path<String>, body: String) -> StatusCode {
    answered(&shared, Ok(serde_json::from_str(&body).unwrap_or(Value::String(body))))
}

async fn error(State(shared): State<Arc<Shared>>, Path(_id): Path<String>, body: String) -> StatusCode {
    answered(&shared, Err(body))
}

async fn init_error(State(shared): State<Arc<Shared>>, body: String) -> StatusCode {
    answered(&shared, Err(format!("init error: {body}")))
}
