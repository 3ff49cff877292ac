//! A hello-world Lambda function: the yardstick `make bench` compares each function's cold start
//! and memory with, since Lambda's own figures for it (about 14 ms to initialise, about 15 MB on
//! arm64) cannot be measured here.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move { Ok::<_, Error>(event.payload) })).await
}
