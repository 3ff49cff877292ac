//! `POST /v1/customers`, `GET /v1/customers`, `GET /v1/customers/{id}`, and
//! `GET /v1/customers/{id}/summary?month=YYYY-MM`: the customer's month so far, and
//! `POST /v1/customers/{id}/portal_sessions`: a signed link to the customer's own read-only page,
//! expiring after `expires_in` seconds (300 by default).

use async_trait::async_trait;
use billy_aws::AwsClients;
use billy_core::DomainResult;
use billy_core::customer::NewCustomer;
use billy_core::ids::IdKind;
use billy_core::service;
use billy_lambda::HttpFunction;
use billy_lambda::config::{Config, MissingVariable};
use billy_lambda::deps::Deps;
use billy_lambda::http::{
    authenticate, authenticated_write, method_not_allowed, page, parse_json, path_param, public_base, query_param,
    respond, route_action,
};
use billy_lambda::views;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateCustomer {
    name: Option<String>,
    email: Option<String>,
    description: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    test_clock: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreatePortalSession {
    expires_in: Option<i64>,
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
        if request.uri().path().ends_with("/summary") {
            let month = query_param(request, "month");
            let summary = service::customers::customer_summary(&self.deps.ports(), &ctx, id, month.as_deref()).await?;
            return Ok(views::customer_summary(id, &summary));
        }
        if id.is_empty() {
            let page = page(request, IdKind::Customer)?;
            Ok(views::list(service::customers::list_customers(&self.deps.ports(), &ctx, &page).await?, views::customer))
        } else {
            Ok(views::customer(&service::customers::get_customer(&self.deps.ports(), &ctx, id).await?))
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
                        let body: CreateCustomer = parse_json(request)?;
                        let input = NewCustomer {
                            name: body.name,
                            email: body.email,
                            description: body.description,
                            metadata: body.metadata,
                        };
                        service::customers::create_customer(&self.deps.ports(), &ctx, input, body.test_clock.as_deref())
                            .await
                    };
                    respond(StatusCode::CREATED, created.await.map(|c| views::customer(&c)))
                })
                .await
            }
            (&Method::POST, false) if route_action(request) == "portal_sessions" => {
                authenticated_write(&self.deps, request, |ctx| async move {
                    let created = async {
                        let body: CreatePortalSession = if request.body().is_empty() {
                            CreatePortalSession::default()
                        } else {
                            parse_json(request)?
                        };
                        let signer = self.deps.sessions.as_ref().ok_or_else(|| {
                            billy_core::DomainError::unexpected("BILLY_SESSION_KEY is not configured for this function")
                        })?;
                        billy_core::session::create_portal_session(
                            &self.deps.ports(),
                            signer,
                            &ctx,
                            &id,
                            body.expires_in,
                            &public_base(request),
                        )
                        .await
                    };
                    respond(StatusCode::CREATED, created.await)
                })
                .await
            }
            (&Method::GET, _) => respond(StatusCode::OK, self.read(request, &id).await),
            _ => method_not_allowed(),
        }
    }
}
