//! Billy's local runner: provisions the local stack from `template.yaml`, then plays API Gateway
//! (HTTP routes) and the Lambda event source mappings (SQS pollers, DynamoDB streams, schedules) for the same
//! handlers the Lambda binaries run.

pub mod access;
pub mod functions;
pub mod lambda;
pub mod openapi;
pub mod provision;
pub mod runner;
pub mod streams;
pub mod template;
pub mod testing;

pub use provision::{Provisioned, provision};
pub use runner::{Runner, RunnerOptions, RunningRunner};
pub use template::Template;

/// The repository's `template.yaml` (the runner's default).
pub fn default_template_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml")
}
