//! Cold start and memory: every function's release binary (host target), started as Lambda starts
//! it against a Runtime API that serves one event, timed from process start to its first poll
//! (init) and to its first answer, with its resident memory after that answer; the same for a
//! hello-world Lambda binary built in the same run, the yardstick each function is given as a
//! ratio (Lambda's own figures for a hello-world, about 14 ms and 15 MB on arm64, cannot be
//! measured here). Each binary is started `BENCH_COLDSTART_RUNS` times; medians are reported.

use billy_local::lambda::{
    RuntimeApi, binary_env, binary_path, http_event, runtime_vars, scheduled_event, sqs_event, stream_record,
};
use billy_local::template::{EventSource, FunctionDef, Template};
use billy_local::testing::TestStack;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
struct Sample {
    init_ms: f64,
    answer_ms: f64,
    rss_mb: f64,
}

/// A process's peak resident memory (`VmHWM`, what Lambda reports as "Max Memory Used") in MB.
pub fn peak_rss_mb(pid: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    kb as f64 / 1024.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Starts `binary` once with `env` against a fresh Runtime API serving `event`.
async fn run_once(binary: &Path, mut env: BTreeMap<String, String>, event: &Value) -> Result<Sample, String> {
    let api = RuntimeApi::start(event.clone()).await.map_err(|e| e.to_string())?;
    env.insert("AWS_LAMBDA_RUNTIME_API".into(), api.url());
    let started = Instant::now();
    let mut child = tokio::process::Command::new(binary)
        .env_clear()
        .envs(&env)
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    let seen = tokio::select! {
        seen = api.invocation(Duration::from_secs(30)) => seen,
        status = child.wait() => return Err(format!("exited before answering: {status:?}")),
    };
    let rss = child.id().map_or(0.0, |pid| peak_rss_mb(&pid.to_string()));
    let _ = child.kill().await;
    drop(api);
    let first_poll = seen.first_poll.ok_or("never polled the Runtime API")?;
    let (answered, answer) = seen.answer.ok_or("never answered")?;
    answer.map_err(|e| format!("answered with an error: {e}"))?;
    Ok(Sample { init_ms: ms(first_poll - started), answer_ms: ms(answered - started), rss_mb: rss })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    crate::percentile(&values, 50.0)
}

async fn measure_binary(
    binary: &Path,
    env: &BTreeMap<String, String>,
    event: &Value,
    runs: usize,
) -> Result<Sample, String> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        samples.push(run_once(binary, env.clone(), event).await?);
    }
    Ok(Sample {
        init_ms: median(samples.iter().map(|s| s.init_ms).collect()),
        answer_ms: median(samples.iter().map(|s| s.answer_ms).collect()),
        rss_mb: median(samples.iter().map(|s| s.rss_mb).collect()),
    })
}

/// A representative first event of `def`'s kind: an authenticated read for an API function, a
/// batch for a queue consumer, a schedule's tick, a stream batch.
fn first_event(def: &FunctionDef, stack: &TestStack, key: &str) -> Value {
    match def.events.first().map(|(_, source)| source) {
        Some(EventSource::Http { method, path }) => {
            let (method, path) = def
                .events
                .iter()
                .find_map(|(_, e)| match e {
                    EventSource::Http { method, path } if method == "GET" => Some((method.clone(), path.clone())),
                    _ => None,
                })
                .unwrap_or_else(|| (method.clone(), path.clone()));
            let params: Vec<(String, String)> = path
                .split('/')
                .filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
                .map(|p| (p.to_owned(), if p == "gateway" { "sandbox".to_owned() } else { "x_coldstart".to_owned() }))
                .collect();
            let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let body = (method != "GET").then(|| json!({}));
            http_event(&format!("{method} {path}"), &params, Some(key), body.as_ref())
        }
        Some(EventSource::Sqs { queue, .. }) => {
            let arn = stack.provisioned.queues.get(queue).map_or("", |(_, _, arn)| arn.as_str());
            sqs_event(arn, &["not a message"])
        }
        Some(EventSource::Stream { .. }) => {
            json!({"Records": [stream_record("1", json!({"pk": {"S": "x"}, "sk": {"S": "y"}}))]})
        }
        Some(EventSource::Schedule { .. } | EventSource::Rule { .. }) | None => scheduled_event(),
    }
}

pub async fn measure() -> Value {
    let runs: usize = crate::env("BENCH_COLDSTART_RUNS", 5);
    let stack = TestStack::start().await;
    let admin = crate::Client { base: stack.url.clone(), http: reqwest::Client::new(), key: stack.admin_token.clone() };
    let tenant = admin.post("/tenants", json!({"name": "Cold start"})).await;
    let key = tenant["api_keys"]["test"].as_str().expect("a test key").to_owned();
    let template = Template::load(&billy_local::default_template_path()).expect("template.yaml loads");

    let hello_env = runtime_vars("hello-lambda", "set per run");
    let hello = measure_binary(&binary_path("release", "hello-lambda"), &hello_env, &json!({"hello": "world"}), runs)
        .await
        .expect("the hello-world binary answers (make bench builds it)");
    eprintln!("[bench] cold start: hello-world init {:.1} ms, {:.1} MB", hello.init_ms, hello.rss_mb);

    let mut rows = serde_json::Map::new();
    for def in template.functions().expect("functions") {
        let env = binary_env(&def, &stack.provisioned, &def.name, "set per run").expect("environment");
        let event = first_event(&def, &stack, &key);
        let row = match measure_binary(&binary_path("release", &def.name), &env, &event, runs).await {
            Ok(s) => json!({
                "init_ms": crate::round2(s.init_ms),
                "first_answer_ms": crate::round2(s.answer_ms),
                "rss_mb": crate::round2(s.rss_mb),
                "init_ratio": crate::round2(s.init_ms / hello.init_ms),
                "rss_ratio": crate::round2(s.rss_mb / hello.rss_mb),
            }),
            Err(e) => json!({"error": e}),
        };
        eprintln!("[bench] cold start: {} {row}", def.name);
        rows.insert(def.name.clone(), row);
    }
    stack.stop().await;
    let failed: Vec<&String> = rows.iter().filter(|(_, r)| r.get("error").is_some()).map(|(n, _)| n).collect();
    assert!(failed.is_empty(), "cold start failed for {failed:?}: see the rows above");
    json!({
        "runs_per_binary": runs,
        "hello_world": {"init_ms": crate::round2(hello.init_ms), "first_answer_ms": crate::round2(hello.answer_ms), "rss_mb": crate::round2(hello.rss_mb)},
        "functions": rows,
    })
}
