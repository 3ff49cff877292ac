//! Glue shared by Billy's functions: configuration, telemetry, the HTTP error contract, and the
//! function traits that both the Lambda entry points and the local runner drive.

pub mod config;
pub mod deps;
pub mod function;
pub mod http;
pub mod money;
pub mod sqs;
pub mod telemetry;
pub mod views;

pub use config::Config;
pub use function::{
    EventFunction, HttpFunction, SqsFunction, StreamBatch, StreamFunction, run_event, run_http, run_sqs, run_stream,
};
