//! Lambda entry point of `sweep-webhooks`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    billy_lambda::telemetry::init();
    let aws = billy_aws::AwsClients::from_env().await;
    let app = sweep_webhooks::App::new(&billy_lambda::Config::from_env(), &aws)?;
    billy_lambda::run_event(app).await
}
