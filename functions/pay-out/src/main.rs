//! Lambda entry point of `pay-out`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    billy_lambda::telemetry::init();
    let aws = billy_aws::AwsClients::from_env().await;
    let app = pay_out::app(&billy_lambda::Config::from_env(), &aws)?;
    billy_lambda::run_sqs(app).await
}
