//! `GET /v1/settlements` (`customer` narrows), `GET /v1/settlements/{id}`: the monthly netting of
//! tenants on `monthly_net`; `GET /v1/settlement_runs`: the settlement job's runs and what each
//! changed; `POST /v1/settlement_runs`: run it now for this tenant mode.

use async_trait::async_trait;
use billy_aws::AwsClients;
use billy_core::DomainResult;
use billy_core::ids::IdKind;
use billy_core::service::settlements as service;
use billy_lambda::HttpFunction;
use billy_lambda::config::{Config, MissingVariable};
use billy_lambda::deps::Deps;
use billy_lambda::http::{
    authenticate, authenticated_write, method_not_allowed, page, path_param, query_param, respond,
};
use billy_lambda::views;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::Value;

#[derive(Debug)]
pub struct App {
    deps: Deps,
}

impl App {
    pub fn new(config: &Config, aws: &AwsClients) -> Result<Self, MissingVariable> {
        Ok(Self { deps: Deps::new(config, aws)? })
    }

    async fn read(&self, request: &Request, runs: bool, id: &str) -> DomainResult<Value> {
        let ctx = authenticate(&self.deps, request).await?;
        let p = self.deps.ports();
        if runs {
            let page = page(request, IdKind::SettlementRun)?;
            return Ok(views::list(service::list_runs(&p, &ctx, &page).await?, views::settlement_run));
        }
        if id.is_empty() {
            let page = page(request, IdKind::Settlement)?;
            let customer = query_param(request, "customer");
            Ok(views::list(service::list_settlements(&p, &ctx, customer.as_deref(), &page).await?, views::settlement))
        } else {
            Ok(views::settlement(&service::get_settlement(&p, &ctx, id).await?))
        }
    }
}

#[async_trait]
impl HttpFunction for App {
    async fn handle(&self, request: Request) -> Response<Body> {
        let request = &request;
        let runs = request.uri().path().ends_with("/settlement_runs");
        let id = path_param(request, "id");
        match (request.method(), runs) {
            (&Method::POST, true) => {
                authenticated_write(&self.deps, request, |ctx| async move {
                    let run = service::run_now(&self.deps.ports(), &ctx).await;
                    respond(StatusCode::CREATED, run.map(|r| views::settlement_run(&r)))
                })
                .await
            }
            (&Method::GET, _) => respond(StatusCode::OK, self.read(request, runs, &id).await),
            _ => method_not_allowed(),
        }
    }
}
