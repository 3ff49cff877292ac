//! `POST /v1/verifications {month}`: ask for a verification of a month (it runs in the
//! background); `GET /v1/verifications/{id}`: its status and every mismatch (entity, field,
//! stored, recomputed); `GET /v1/verifications`: the runs, newest first.

use async_trait::async_trait;
use billy_aws::AwsClients;
use billy_core::DomainResult;
use billy_core::ids::IdKind;
use billy_core::service::verifications as service;
use billy_lambda::HttpFunction;
use billy_lambda::config::{Config, MissingVariable};
use billy_lambda::deps::Deps;
use billy_lambda::http::{
    authenticate, authenticated_write, method_not_allowed, page, parse_json, path_param, respond,
};
use billy_lambda::views;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Create {
    month: String,
}

#[derive(Debug)]
pub struct App {
    deps: Deps,
}

impl App {
    pub fn new(config: &Config, aws: &AwsClients) -> Result<Self, MissingVariable> {
        Ok(Self { deps: Deps::new(config, aws)? })
    }

    async fn read(&self, request: &Request, id: &str) -> DomainResult<Value> {
        let ctx = authenticate(&self.deps, request).await?;
        let p = self.deps.ports();
        if id.is_empty() {
            let page = page(request, IdKind::Verification)?;
            Ok(views::list(service::list(&p, &ctx, &page).await?, views::verification))
        } else {
            Ok(views::verification(&service::get(&p, &ctx, id).await?))
        }
    }
}

#[async_trait]
impl HttpFunction for App {
    async fn handle(&self, request: Request) -> Response<Body> {
        let request = &request;
        let id = path_param(request, "id");
        match (request.method(), id.is_empty()) {
            (&Method::POST, true) => {
                authenticated_write(&self.deps, request, |ctx| async move {
                    let created = async {
                        let body: Create = parse_json(request)?;
                        service::request(&self.deps.ports(), &ctx, &body.month).await
                    };
                    respond(StatusCode::ACCEPTED, created.await.map(|v| views::verification(&v)))
                })
                .await
            }
            (&Method::GET, _) => respond(StatusCode::OK, self.read(request, &id).await),
            _ => method_not_allowed(),
        }
    }
}
