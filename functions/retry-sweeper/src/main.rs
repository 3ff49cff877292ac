//! Lambda entry point of `retry-sweeper`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    billy_lambda::telemetry::init();
    let aws = billy_aws::AwsClients::from_env().await;
    let app = retry_sweeper::App::new(&billy_lambda::Config::from_env(), &aws)?;
    billy_lambda::run_event(app).await
}
