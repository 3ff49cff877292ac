//! Lambda entry point of `api-exports`.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    billy_lambda::telemetry::init();
    let aws = billy_aws::AwsClients::from_env().await;
    let config = billy_lambda::Config::from_env();
    let files = billy_files::S3Files::from_env(config.require("EXPORTS_BUCKET")?).await;
    let app = api_exports::App::new(&config, &aws, files)?;
    billy_lambda::run_http(app).await
}
