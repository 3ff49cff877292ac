//! The handlers the runner can host, by function folder name. Every function in `template.yaml`
//! must appear here (a test checks both directions), so the runner wires exactly what AWS would.

use billy_aws::AwsClients;
use billy_lambda::{Config, EventFunction, HttpFunction, SqsFunction, StreamFunction};
use std::sync::Arc;

#[derive(Clone)]
pub enum Handler {
    Http(Arc<dyn HttpFunction>),
    Sqs(Arc<dyn SqsFunction>),
    Event(Arc<dyn EventFunction>),
    Stream(Arc<dyn StreamFunction>),
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Http(_) => "Handler::Http",
            Self::Sqs(_) => "Handler::Sqs",
            Self::Event(_) => "Handler::Event",
            Self::Stream(_) => "Handler::Stream",
        })
    }
}

/// The names of every function folder the runner knows.
pub const KNOWN: &[&str] = &[
    "api-audit",
    "api-coupons",
    "api-credits",
    "api-customers",
    "api-health",
    "api-invoices",
    "api-payment-methods",
    "api-exports",
    "api-gateway-accounts",
    "api-plans",
    "api-reports",
    "api-settings",
    "api-settlements",
    "api-subscriptions",
    "api-tenants",
    "api-test-clocks",
    "api-transactions",
    "api-usage",
    "api-verifications",
    "api-webhook-endpoints",
    "billing-tick",
    "charge-invoice",
    "dashboard",
    "deliver-webhooks",
    "export-transactions",
    "generate-invoice",
    "pay-out",
    "publish-events",
    "retry-sweeper",
    "settle-accounts",
    "sweep-webhooks",
    "tally-reports",
    "verify-month",
    "webhook-processor",
    "webhook-receiver",
];

/// The exports bucket a function is given, on the local stack's S3, through a client with the same
/// added interceptors as the function's other clients.
fn local_files(
    config: &Config,
    aws: &AwsClients,
) -> Result<billy_files::S3Files, billy_lambda::config::MissingVariable> {
    let bucket = config.require("EXPORTS_BUCKET")?;
    let client = billy_files::local_client(&billy_aws::LocalEndpoints::from_env().localstack);
    let mut s3 = client.config().to_builder();
    for interceptor in aws.added_interceptors() {
        s3.push_interceptor(interceptor.clone());
    }
    Ok(billy_files::S3Files::new(aws_sdk_s3::Client::from_conf(s3.build()), bucket))
}

/// Builds the handler of function `name` with the configuration the template gives it, exactly as
/// its `main.rs` does in Lambda.
pub fn build(name: &str, config: &Config, aws: &AwsClients) -> Result<Handler, String> {
    let err = |e: billy_lambda::config::MissingVariable| format!("{name}: {e}");
    Ok(match name {
        "api-health" => Handler::Http(Arc::new(api_health::App::new(config, aws).map_err(err)?)),
        "api-tenants" => Handler::Http(Arc::new(api_tenants::App::new(config, aws).map_err(err)?)),
        "api-customers" => Handler::Http(Arc::new(api_customers::App::new(config, aws).map_err(err)?)),
        "api-payment-methods" => Handler::Http(Arc::new(api_payment_methods::App::new(config, aws).map_err(err)?)),
        "api-test-clocks" => Handler::Http(Arc::new(api_test_clocks::App::new(config, aws).map_err(err)?)),
        "api-plans" => Handler::Http(Arc::new(api_plans::App::new(config, aws).map_err(err)?)),
        "api-subscriptions" => Handler::Http(Arc::new(api_subscriptions::App::new(config, aws).map_err(err)?)),
        "api-invoices" => Handler::Http(Arc::new(api_invoices::App::new(config, aws).map_err(err)?)),
        "api-audit" => Handler::Http(Arc::new(api_audit::App::new(config, aws).map_err(err)?)),
        "webhook-receiver" => Handler::Http(Arc::new(webhook_receiver::App::new(config, aws).map_err(err)?)),
        "webhook-processor" => Handler::Sqs(Arc::new(webhook_processor::App::new(config, aws).map_err(err)?)),
        "generate-invoice" => Handler::Sqs(Arc::new(generate_invoice::App::new(config, aws).map_err(err)?)),
        "charge-invoice" => Handler::Sqs(Arc::new(charge_invoice::app(config, aws).map_err(err)?)),
        "pay-out" => Handler::Sqs(Arc::new(pay_out::app(config, aws).map_err(err)?)),
        "billing-tick" => Handler::Event(Arc::new(billing_tick::App::new(config, aws).map_err(err)?)),
        "retry-sweeper" => Handler::Event(Arc::new(retry_sweeper::App::new(config, aws).map_err(err)?)),
        "publish-events" => Handler::Stream(Arc::new(publish_events::App::new(config, aws).map_err(err)?)),
        "api-settings" => Handler::Http(Arc::new(api_settings::App::new(config, aws).map_err(err)?)),
        "api-settlements" => Handler::Http(Arc::new(api_settlements::App::new(config, aws).map_err(err)?)),
        "settle-accounts" => Handler::Event(Arc::new(settle_accounts::App::new(config, aws).map_err(err)?)),
        "api-verifications" => Handler::Http(Arc::new(api_verifications::App::new(config, aws).map_err(err)?)),
        "verify-month" => Handler::Event(Arc::new(verify_month::App::new(config, aws).map_err(err)?)),
        "api-credits" => Handler::Http(Arc::new(api_credits::App::new(config, aws).map_err(err)?)),
        "api-coupons" => Handler::Http(Arc::new(api_coupons::App::new(config, aws).map_err(err)?)),
        "api-usage" => Handler::Http(Arc::new(api_usage::App::new(config, aws).map_err(err)?)),
        "api-gateway-accounts" => Handler::Http(Arc::new(api_gateway_accounts::App::new(config, aws).map_err(err)?)),
        "api-webhook-endpoints" => Handler::Http(Arc::new(api_webhook_endpoints::App::new(config, aws).map_err(err)?)),
        "deliver-webhooks" => Handler::Sqs(Arc::new(deliver_webhooks::App::new(config, aws).map_err(err)?)),
        "sweep-webhooks" => Handler::Event(Arc::new(sweep_webhooks::App::new(config, aws).map_err(err)?)),
        "api-reports" => Handler::Http(Arc::new(api_reports::App::new(config, aws).map_err(err)?)),
        "tally-reports" => Handler::Stream(Arc::new(tally_reports::App::new(config, aws).map_err(err)?)),
        "dashboard" => Handler::Http(Arc::new(dashboard::App::new(config, aws).map_err(err)?)),
        "api-transactions" => Handler::Http(Arc::new(api_transactions::App::new(config, aws).map_err(err)?)),
        "api-exports" => Handler::Http(Arc::new(
            api_exports::App::new(config, aws, local_files(config, aws).map_err(err)?).map_err(err)?,
        )),
        "export-transactions" => Handler::Sqs(Arc::new(
            export_transactions::App::new(config, aws, local_files(config, aws).map_err(err)?).map_err(err)?,
        )),
        other => {
            return Err(format!("function '{other}' in template.yaml has no handler in billy-local"));
        }
    })
}
