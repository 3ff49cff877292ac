//! Lambda entry point of `tally-reports`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    billy_lambda::telemetry::init();
    let aws = billy_aws::AwsClients::from_env().await;
    let app = tally_reports::App::new(&billy_lambda::Config::from_env(), &aws)?;
    billy_lambda::run_stream(app).await
}
