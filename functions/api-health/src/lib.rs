//! `GET /v1/health`: reachability of every dependency; 200 when all answer, 503 otherwise.

use async_trait::async_trait;
use billy_aws::AwsClients;
use billy_aws::health::AwsHealth;
use billy_core::ports::HealthProbe;
use billy_lambda::HttpFunction;
use billy_lambda::config::{Config, MissingVariable};
use billy_lambda::http::json_response;
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};
use serde_json::json;

#[derive(Debug)]
pub struct App {
    probe: Box<dyn HealthProbe>,
}

impl App {
    /// Checks both tables and every queue whose URL the function is given (`*_QUEUE_URL`).
    pub fn new(config: &Config, aws: &AwsClients) -> Result<Self, MissingVariable> {
        let queues = config
            .vars()
            .iter()
            .filter_map(|(k, v)| k.strip_suffix("_QUEUE_URL").map(|name| (name.to_lowercase(), v.clone())))
            .collect();
        Ok(Self::with_probe(Box::new(AwsHealth::new(aws.clone(), config.tables()?, queues))))
    }

    pub fn with_probe(probe: Box<dyn HealthProbe>) -> Self {
        Self { probe }
    }
}

#[async_trait]
impl HttpFunction for App {
    async fn handle(&self, _request: Request) -> Response<Body> {
        let dependencies = self.probe.check().await;
        let healthy = dependencies.iter().all(|d| d.ok);
        json_response(
            if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE },
            &json!({"status": if healthy { "ok" } else { "degraded" }, "dependencies": dependencies}),
        )
    }
}
