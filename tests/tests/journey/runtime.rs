//! The functions' real `bootstrap` binaries under the Lambda Runtime API: every function of
//! `template.yaml`, built as its own executable (debug, host target; `make test` builds them), is
//! started the way Lambda starts it — its template configuration resolved to the local stack, plus
//! the runtime's variables — against cargo-lambda's Runtime API emulator, and served one event of
//! its kind: an API Gateway v2 request, an SQS batch holding a poison message, a scheduled
//! EventBridge event, a DynamoDB stream batch. Each answer is checked for what it says, and the
//! binary must still be running after it (a crash after answering is a failure too).

use super::World;
use billy_local::lambda::{binary_env, binary_path, http_event, scheduled_event, sqs_event, stream_record};
use billy_local::runner::function_config;
use billy_local::template::{EventSource, FunctionDef, Template};
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// cargo-lambda's Runtime API emulator (`cargo lambda watch --only-lambda-apis`) on a loopback
/// port; it builds and starts nothing itself.
struct Emulator {
    child: Child,
    port: u16,
    http: reqwest::Client,
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the tests crate sits in the workspace").to_owned()
}

/// A file under `target/runtime/` (this test's logs).
fn log_path(name: &str) -> PathBuf {
    let path = binary_path("runtime", name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    path
}

fn free_loopback_port() -> u16 {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("a free loopback port");
    listener.local_addr().unwrap().port()
}

impl Emulator {
    async fn start() -> Self {
        let cargo_lambda = std::env::var("BILLY_CARGO_LAMBDA")
            .expect("BILLY_CARGO_LAMBDA names cargo-lambda (set by infra/local/env.sh; run through `make test`)");
        let port = free_loopback_port();
        let log = std::fs::File::create(log_path("emulator.log")).unwrap();
        let child = Command::new(cargo_lambda)
            .args(["lambda", "watch", "--only-lambda-apis", "--invoke-address", "127.0.0.1", "--invoke-port"])
            .arg(port.to_string())
            .current_dir(workspace_root())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("cargo-lambda starts");
        let deadline = Instant::now() + Duration::from_secs(60);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(Instant::now() < deadline, "the Runtime API emulator did not listen on 127.0.0.1:{port}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self { child, port, http: reqwest::Client::new() }
    }

    /// The Runtime API address of `function`: each function polls its own queue of invocations,
    /// so no other binary (a previous one still being torn down) can take its event.
    fn runtime_api(&self, function: &str) -> String {
        format!("http://127.0.0.1:{}/.rt/{function}", self.port)
    }

    /// Invokes `function` and returns its answer, or the runtime's error.
    async fn invoke(&self, function: &str, payload: &Value) -> Result<Value, String> {
        let url = format!("http://127.0.0.1:{}/2015-03-31/functions/{function}/invocations", self.port);
        let res = self
            .http
            .post(url)
            .timeout(Duration::from_secs(60))
            .json(payload)
            .send()
            .await
            .map_err(|e| format!("invoke: {e}"))?;
        let function_error = res.headers().get("x-amz-function-error").is_some();
        let status = res.status();
        let text = res.text().await.map_err(|e| e.to_string())?;
        if function_error || !status.is_success() {
            return Err(format!("{status}: {text}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// One function's binary, started as Lambda starts it.
struct Running {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Running {
    async fn start(world: &World, def: &FunctionDef, emulator: &Emulator) -> Self {
        let binary = binary_path("debug", &def.name);
        assert!(binary.exists(), "{} is not built (make test builds every function's binary)", binary.display());
        let env = binary_env(def, &world.stack.provisioned, &def.name, &emulator.runtime_api(&def.name))
            .expect("the function's environment resolves");
        let mut command = Command::new(&binary);
        command.env_clear().envs(env);
        let log = log_path(&format!("{}.log", def.name));
        let log_file = std::fs::File::create(&log).unwrap();
        let child = command
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{} starts: {e}", binary.display()));
        Self { name: def.name.clone(), child, log }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Serves `event` and returns the answer; the binary must still be up afterwards.
    async fn serve(&mut self, emulator: &Emulator, event: &Value) -> Value {
        let answer = tokio::select! {
            answer = emulator.invoke(&self.name, event) => answer,
            status = self.child.wait() => Err(format!("the binary exited before answering: {status:?}")),
        };
        let answer = answer.unwrap_or_else(|e| panic!("{}: {e}\n{}", self.name, self.log_tail()));
        assert!(self.child.try_wait().unwrap().is_none(), "{} exited after answering\n{}", self.name, self.log_tail());
        answer
    }

    /// Stops the binary, which must still be running (a crash just after an answer fails too).
    async fn stop(mut self) {
        assert!(self.child.try_wait().unwrap().is_none(), "{} exited after answering\n{}", self.name, self.log_tail());
        let _ = self.child.kill().await;
    }
}

/// The status and JSON body of an HTTP function's answer.
fn http_answer(answer: &Value) -> (StatusCode, Value) {
    let status = StatusCode::from_u16(u16::try_from(answer["statusCode"].as_u64().unwrap()).unwrap()).unwrap();
    let body = answer["body"].as_str().map_or(Value::Null, |b| serde_json::from_str(b).unwrap_or(json!(b)));
    (status, body)
}

/// What each HTTP function is asked, and the status its answer must have: reads of what the
/// in-process runner stored (so the binary reads the same tables), refusals and bad input.
fn http_case(world: &World, name: &str) -> (Value, StatusCode) {
    let key = Some(world.key.as_str());
    let customer = world.customer.as_str();
    let get = |route: &str, params: &[(&str, &str)]| http_event(route, params, key, None);
    match name {
        "api-health" => (http_event("GET /v1/health", &[], None, None), StatusCode::OK),
        "api-tenants" => {
            (http_event("POST /v1/tenants", &[], None, Some(&json!({"name": "x"}))), StatusCode::UNAUTHORIZED)
        }
        "api-customers" => (get("GET /v1/customers/{id}", &[("id", customer)]), StatusCode::OK),
        "api-payment-methods" => (get("GET /v1/customers/{id}/payment_methods", &[("id", customer)]), StatusCode::OK),
        "api-test-clocks" => (get("GET /v1/test_clocks/{id}", &[("id", world.clock.as_str())]), StatusCode::OK),
        "api-plans" => (http_event("POST /v1/plans", &[], key, Some(&json!({}))), StatusCode::BAD_REQUEST),
        "api-subscriptions" => (get("GET /v1/subscriptions", &[]), StatusCode::OK),
        "api-invoices" => (get("GET /v1/invoices/{id}", &[("id", "inv_runtimetest")]), StatusCode::NOT_FOUND),
        "api-audit" => (get("GET /v1/customers/{id}/history", &[("id", customer)]), StatusCode::OK),
        "api-settings" => (get("GET /v1/settings", &[]), StatusCode::OK),
        "api-credits" => (get("GET /v1/customers/{id}/balance", &[("id", customer)]), StatusCode::OK),
        "api-coupons" => (get("GET /v1/coupons", &[]), StatusCode::OK),
        "api-settlements" => (get("GET /v1/settlements", &[]), StatusCode::OK),
        "api-verifications" => (get("GET /v1/verifications", &[]), StatusCode::OK),
        "api-usage" => (http_event("POST /v1/usage", &[], key, Some(&json!({}))), StatusCode::BAD_REQUEST),
        "api-gateway-accounts" => (get("GET /v1/gateway_accounts", &[]), StatusCode::OK),
        "api-transactions" => (get("GET /v1/transactions", &[]), StatusCode::OK),
        "api-exports" => (get("GET /v1/exports/{id}", &[("id", "exp_runtimetest")]), StatusCode::NOT_FOUND),
        "api-webhook-endpoints" => (get("GET /v1/webhook_endpoints", &[]), StatusCode::OK),
        "api-reports" => (get("GET /v1/reports/revenue", &[]), StatusCode::OK),
        "dashboard" => (http_event("GET /dashboard", &[], None, None), StatusCode::OK),
        "webhook-receiver" => (
            http_event(
                "POST /v1/webhooks/{gateway}",
                &[("gateway", "sandbox")],
                None,
                Some(&json!({"id": "evt_forged"})),
            ),
            StatusCode::BAD_REQUEST,
        ),
        other => panic!("{other} has HTTP routes but no runtime case: add one"),
    }
}

/// What an answer with a body says, checked beyond its status.
fn check_http_body(world: &World, name: &str, body: &Value) {
    match name {
        "api-health" => assert_eq!(body["status"], "ok", "{body}"),
        "api-customers" => assert_eq!(body["id"], world.customer.as_str(), "{body}"),
        "api-test-clocks" => assert_eq!(body["id"], world.clock.as_str(), "{body}"),
        "api-audit" => assert!(body.to_string().contains("customer.created"), "the customer's trail: {body}"),
        "api-reports" => assert_eq!(body["report"], "revenue", "{body}"),
        "dashboard" => assert!(body.as_str().is_some_and(|page| page.contains("/dashboard/assets/app.js")), "{body}"),
        _ => {
            if body.get("error").is_some() {
                billy_e2e::error_code(body);
            } else {
                assert!(body.is_object(), "{name}: {body}");
            }
        }
    }
}

#[tokio::test]
async fn every_function_binary_answers_its_kind_of_event_under_the_lambda_runtime_api() {
    let world = World::new("2026-03-01T00:00:00Z", "4242424242424242").await;
    let template = Template::load(&billy_local::default_template_path()).unwrap();
    let emulator = Emulator::start().await;
    let functions = template.functions().unwrap();
    assert!(functions.len() >= 29, "every function of the template");
    let mut served = Vec::new();
    for def in &functions {
        let mut running = Running::start(&world, def, &emulator).await;
        match def.events.first().map(|(_, source)| source) {
            Some(EventSource::Http { .. }) => {
                let (event, want) = http_case(&world, &def.name);
                let (status, body) = http_answer(&running.serve(&emulator, &event).await);
                assert_eq!(status, want, "{}: {body}", def.name);
                check_http_body(&world, &def.name, &body);
            }
            Some(EventSource::Sqs { queue, .. }) => {
                // A poison message (not JSON) is dead-lettered at once with its reason and not
                // reported as a failure, so the queue does not redeliver it.
                let (_, _, arn) = &world.stack.provisioned.queues[queue];
                let poison = format!("poison for {} {}", def.name, uuid::Uuid::new_v4());
                let answer = running.serve(&emulator, &sqs_event(arn, &[&poison])).await;
                assert_eq!(answer["batchItemFailures"], json!([]), "{}: {answer}", def.name);
                let dead_letters = def.environment.contains_key("DEAD_LETTER_QUEUE_URL");
                assert!(dead_letters, "{} consumes a queue without a dead-letter queue", def.name);
                let config = function_config(def, &world.stack.provisioned).unwrap();
                let dlq = config.get("DEAD_LETTER_QUEUE_URL").unwrap().to_owned();
                // It is told the queue it consumes, whose failed messages it shows again early.
                let consumed = world.stack.provisioned.queue_url(queue).unwrap();
                assert_eq!(config.get("QUEUE_URL"), Some(consumed), "{}: QUEUE_URL is its own queue", def.name);
                assert_dead_lettered(&world, &dlq, &poison).await;
            }
            Some(EventSource::Schedule { .. } | EventSource::Rule { .. }) => {
                // Scheduled: runs over the whole (small) store and answers without error, twice
                // (the second time warm, in the same process).
                assert_eq!(running.serve(&emulator, &scheduled_event()).await, Value::Null, "{}", def.name);
                assert_eq!(running.serve(&emulator, &scheduled_event()).await, Value::Null, "{}", def.name);
            }
            Some(EventSource::Stream { .. }) => {
                // A stray item is skipped; an audit event that cannot be read stops the batch at
                // its own sequence number, so the stream retries from there and loses nothing.
                let stray = stream_record("100", json!({"pk": {"S": "x"}, "sk": {"S": "y"}}));
                let unreadable =
                    stream_record("200", json!({"pk": {"S": "x"}, "sk": {"S": "z"}, "action": {"S": "invoice.paid"}}));
                let answer = running.serve(&emulator, &json!({"Records": [stray.clone()]})).await;
                assert_eq!(answer["batchItemFailures"], json!([]), "{answer}");
                let answer = running.serve(&emulator, &json!({"Records": [stray, unreadable]})).await;
                assert_eq!(answer["batchItemFailures"], json!([{"itemIdentifier": "200"}]), "{answer}");
            }
            None => panic!("{} has no event source", def.name),
        }
        running.stop().await;
        served.push(def.name.clone());
    }
    emulator.stop().await;
    assert_eq!(served.len(), functions.len());
    world.stack.stop().await;
}

async fn assert_dead_lettered(world: &World, queue_url: &str, body: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let received = world
            .stack
            .aws
            .sqs
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .message_attribute_names("All")
            .wait_time_seconds(1)
            .send()
            .await
            .unwrap();
        for m in received.messages() {
            if m.body() == Some(body) {
                let reason = m.message_attributes().and_then(|a| a.get("reason")).and_then(|r| r.string_value());
                assert!(reason.is_some_and(|r| !r.is_empty()), "dead-lettered with its reason: {m:?}");
                return;
            }
        }
        assert!(Instant::now() < deadline, "{body} was not dead-lettered to {queue_url}");
    }
}
