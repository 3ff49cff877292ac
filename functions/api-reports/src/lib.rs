//! The dashboard's aggregates, read from the counters tally-reports keeps from the journal (never
//! from the invoices themselves): `GET /v1/reports/revenue` (`interval=day|month`, `from`, `to`),
//! `GET /v1/reports/invoices` (by status), `GET /v1/reports/dunning` (`from`, `to` months) and
//! `GET /v1/reports/renewals` (`days` from `from`). Read with an API key or the dashboard's session.

use async_trait::async_trait;
use billy_aws::AwsClients;
use billy_core::DomainResult;
use billy_core::ports::Clock;
use billy_core::service::reports as service;
use billy_lambda::HttpFunction;
use billy_lambda::config::{Config, MissingVariable};
use billy_lambda::deps::Deps;
use billy_lambda::http::{authenticate, method_not_allowed, query_param, respond, route_action};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::Value;

#[derive(Debug)]
pub struct App {
    deps: Deps,
}

impl App {
    pub fn new(config: &Config, aws: &AwsClients) -> Result<Self, MissingVariable> {
        config.require("BILLY_REPORT_TABLE")?;
        Ok(Self { deps: Deps::new(config, aws)? })
    }

    async fn report(&self, request: &Request, name: &str) -> DomainResult<Value> {
        let ctx = authenticate(&self.deps, request).await?;
        let q = |name: &str| query_param(request, name);
        let (reports, now) = (&self.deps.reports, self.deps.clock.now());
        match name {
            "revenue" => {
                let interval = service::Interval::parse(q("interval").as_deref())?;
                service::revenue(reports, &ctx, interval, q("from").as_deref(), q("to").as_deref(), now).await
            }
            "invoices" => service::invoices(reports, &ctx).await,
            "dunning" => service::dunning(reports, &ctx, q("from").as_deref(), q("to").as_deref(), now).await,
            _ => service::renewals(reports, &ctx, q("from").as_deref(), q("days").as_deref(), now).await,
        }
    }
}

#[async_trait]
impl HttpFunction for App {
    async fn handle(&self, request: Request) -> Response<Body> {
        let name = route_action(&request);
        if request.method() != Method::GET || !["revenue", "invoices", "dunning", "renewals"].contains(&name.as_str()) {
            return method_not_allowed();
        }
        respond(StatusCode::OK, self.report(&request, &name).await)
    }
}
