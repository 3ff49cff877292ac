//! Lambda entry point of `export-transactions`.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    billy_lambda::telemetry::init();
    let aws = billy_aws::AwsClients::from_env().await;
    let config = billy_lambda::Config::from_env();
    let files = billy_files::S3Files::from_env(config.require("EXPORTS_BUCKET")?).await;
    let app = export_transactions::App::new(&config, &aws, files)?;
    billy_lambda::run_sqs(app).await
}
