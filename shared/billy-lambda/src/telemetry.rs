//! Tracing set up once per process: JSON lines in Lambda (CloudWatch), readable text locally, and
//! for tests a copy of every line in memory, so a test can read what a run logged.

use std::sync::{Arc, Mutex, OnceLock};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // stderr: Lambda captures it like stdout, and locally stdout stays free for program output.
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_writer(std::io::stderr);
    // `try_init`: the local runner hosts many functions in one process and calls this once.
    let _ = if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some() {
        builder.json().without_time().try_init()
    } else {
        builder.try_init()
    };
}

static CAPTURED: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// For tests: logs as `init` does, and also keeps every line of Billy's own crates down to debug
/// level (the SDK's and HTTP stacks' from info) in memory, for `captured`. The first call wins.
pub fn init_capturing() {
    let buffer = CAPTURED.get_or_init(|| Arc::new(Mutex::new(Vec::new())));
    let stderr_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let quiet = [
        "aws_smithy_runtime",
        "aws_smithy_runtime_api",
        "aws_smithy_http_client",
        "aws_config",
        "aws_sdk_dynamodb",
        "aws_sdk_sqs",
        "aws_sdk_eventbridge",
        "aws_sdk_dynamodbstreams",
        "hyper",
        "hyper_util",
        "h2",
        "rustls",
        "reqwest",
        "tower",
    ];
    let capture_filter = EnvFilter::new(
        std::iter::once("debug".to_owned())
            .chain(quiet.iter().map(|c| format!("{c}=info")))
            .collect::<Vec<_>>()
            .join(","),
    );
    let writer = Capture(Arc::clone(buffer));
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer().with_target(false).with_writer(std::io::stderr).with_filter(stderr_filter),
        )
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(move || writer.clone())
                .with_filter(capture_filter),
        )
        .try_init();
}

/// Everything captured since `init_capturing` (empty when it was not called first).
pub fn captured() -> String {
    CAPTURED
        .get()
        .map(|b| String::from_utf8_lossy(&b.lock().unwrap_or_else(|p| p.into_inner())).into_owned())
        .unwrap_or_default()
}
