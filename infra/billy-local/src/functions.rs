//! The handlers the runner can host, by function folder name. Every function in `template.yaml`
//! must appear here (a test checks both directions), so the runner wires exactly what AWS would.

use billy_aws::AwsClients;
use billy_lambda::{Config, EventFunction, HttpFunction, SqsFunction};
use std::sync::Arc;

#[derive(Clone)]
pub enum Handler {
    Http(Arc<dyn HttpFunction>),
    Sqs(Arc<dyn SqsFunction>),
    Event(Arc<dyn EventFunction>),
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Http(_) => "Handler::Http",
            Self::Sqs(_) => "Handler::Sqs",
            Self::Event(_) => "Handler::Event",
        })
    }
}

/// The names of every function folder the runner knows.
pub const KNOWN: &[&str] = &["api-health", "api-tenants", "api-customers"];

/// Builds the handler of function `name` with the configuration the template gives it, exactly as
/// its `main.rs` does in Lambda.
pub fn build(name: &str, config: &Config, aws: &AwsClients) -> Result<Handler, String> {
    let err = |e: billy_lambda::config::MissingVariable| format!("{name}: {e}");
    Ok(match name {
        "api-health" => Handler::Http(Arc::new(api_health::App::new(config, aws).map_err(err)?)),
        "api-tenants" => Handler::Http(Arc::new(api_tenants::App::new(config, aws).map_err(err)?)),
        "api-customers" => Handler::Http(Arc::new(api_customers::App::new(config, aws).map_err(err)?)),
        other => {
            return Err(format!("function '{other}' in template.yaml has no handler in billy-local"));
        }
    })
}
