//! `POST /v1/webhooks/{gateway}` (the deployment's own gateway account) and
//! `POST /v1/webhooks/{gateway}/{account}` (a tenant's connected account): verifies the
//! gateway's signature with that account's secret (bad or stale: 400, nothing stored) and hands
//! the events to the webhook queue at once; the processor recognises replays.

use async_trait::async_trait;
use billy_aws::AwsClients;
use billy_core::billing::receive_webhook;
use billy_lambda::HttpFunction;
use billy_lambda::config::{Config, MissingVariable};
use billy_lambda::deps::Deps;
use billy_lambda::http::{error_response, path_param};
use lambda_http::http::StatusCode;
use lambda_http::{Body, Request, Response};

#[derive(Debug)]
pub struct App {
    deps: Deps,
}

impl App {
    pub fn new(config: &Config, aws: &AwsClients) -> Result<Self, MissingVariable> {
        Ok(Self { deps: Deps::new(config, aws)? })
    }
}

#[async_trait]
impl HttpFunction for App {
    async fn handle(&self, request: Request) -> Response<Body> {
        let gateway = path_param(&request, "gateway");
        let headers: Vec<(String, String)> = request
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        let account = path_param(&request, "account");
        let account = (!account.is_empty()).then_some(account.as_str());
        match receive_webhook(&self.deps.ports(), &gateway, account, &headers, request.body().as_ref()).await {
            // Each gateway expects its own acknowledgement (Adyen: the text `[accepted]`).
            Ok(answer) => {
                let content_type = if answer.starts_with('{') { "application/json" } else { "text/plain" };
                Response::builder()
                    .status(StatusCode::OK)
                    .header("content-type", content_type)
                    .body(Body::Text(answer.to_owned()))
                    .unwrap_or_default()
            }
            Err(e) => error_response(&e),
        }
    }
}
