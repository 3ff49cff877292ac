//! Lambda entry point of `api-reports`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    billy_lambda::telemetry::init();
    let aws = billy_aws::AwsClients::from_env().await;
    let app = api_reports::App::new(&billy_lambda::Config::from_env(), &aws)?;
    billy_lambda::run_http(app).await
}
