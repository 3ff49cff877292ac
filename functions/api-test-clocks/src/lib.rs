//! `POST /v1/test_clocks`, `GET /v1/test_clocks/{id}`, `POST /v1/test_clocks/{id}/advance`.

use async_trait::async_trait;
use billy_aws::AwsClients;
use billy_core::schedule::parse_time;
use billy_core::service;
use billy_lambda::HttpFunction;
use billy_lambda::config::{Config, MissingVariable};
use billy_lambda::deps::Deps;
use billy_lambda::http::{authenticate, authenticated_write, method_not_allowed, parse_json, path_param, respond};
use billy_lambda::views;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateClock {
    frozen_time: String,
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    frozen_time: String,
}

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
        let request = &request;
        let id = path_param(request, "id");
        let advancing = request.uri().path().ends_with("/advance");
        let p = self.deps.ports();
        let p = &p;
        match (request.method(), id.is_empty(), advancing) {
            (&Method::POST, true, _) => {
                authenticated_write(&self.deps, request, |ctx| async move {
                    let created = async {
                        let body: CreateClock = parse_json(request)?;
                        let at = parse_time(&body.frozen_time, "frozen_time")?;
                        service::clocks::create_clock(p, &ctx, at, body.name).await
                    };
                    respond(StatusCode::CREATED, created.await.map(|c| views::test_clock(&c)))
                })
                .await
            }
            (&Method::POST, false, true) => {
                authenticated_write(&self.deps, request, |ctx| async move {
                    let advanced = async {
                        let body: Advance = parse_json(request)?;
                        let to = parse_time(&body.frozen_time, "frozen_time")?;
                        service::clocks::advance_clock(p, &ctx, &id, to).await
                    };
                    respond(StatusCode::OK, advanced.await.map(|c| views::test_clock(&c)))
                })
                .await
            }
            (&Method::GET, false, false) => {
                let view = async {
                    let ctx = authenticate(&self.deps, request).await?;
                    service::clocks::get_clock(p, &ctx, &id).await
                };
                respond(StatusCode::OK, view.await.map(|c| views::test_clock(&c)))
            }
            _ => method_not_allowed(),
        }
    }
}
