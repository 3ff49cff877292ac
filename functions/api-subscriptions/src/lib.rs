//! `POST /v1/subscriptions`, `GET /v1/subscriptions`, `GET /v1/subscriptions/{id}`,
//! `POST /v1/subscriptions/{id}/cancel`.

use async_trait::async_trait;
use billy_aws::AwsClients;
use billy_core::DomainResult;
use billy_core::ids::IdKind;
use billy_core::schedule::parse_time;
use billy_core::service::subscriptions::{self as service, NewSubscription};
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
struct CreateSubscription {
    customer: String,
    plan: String,
    start: Option<String>,
    payment_method: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Cancel {
    #[serde(default)]
    at_period_end: bool,
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
        let ctx = authenticate(&self.deps.tenants, request).await?;
        if id.is_empty() {
            let page = page(request, IdKind::Subscription)?;
            Ok(views::list(service::list_subscriptions(&self.deps.ports(), &ctx, &page).await?, views::subscription))
        } else {
            Ok(views::subscription(&service::get_subscription(&self.deps.ports(), &ctx, id).await?))
        }
    }
}

#[async_trait]
impl HttpFunction for App {
    async fn handle(&self, request: Request) -> Response<Body> {
        let request = &request;
        let id = path_param(request, "id");
        let canceling = request.uri().path().ends_with("/cancel");
        let p = self.deps.ports();
        let s = &p;
        match (request.method(), id.is_empty(), canceling) {
            (&Method::POST, true, _) => {
                authenticated_write(&self.deps, request, |ctx| async move {
                    let created = async {
                        let body: CreateSubscription = parse_json(request)?;
                        let start = body.start.as_deref().map(|s| parse_time(s, "start")).transpose()?;
                        let input = NewSubscription {
                            customer: body.customer,
                            plan: body.plan,
                            start,
                            payment_method: body.payment_method,
                        };
                        service::create_subscription(s, &ctx, input).await
                    };
                    respond(StatusCode::CREATED, created.await.map(|s| views::subscription(&s)))
                })
                .await
            }
            (&Method::POST, false, true) => {
                authenticated_write(&self.deps, request, |ctx| async move {
                    let canceled = async {
                        let body: Cancel = parse_json(request)?;
                        service::cancel_subscription(s, &ctx, &id, body.at_period_end).await
                    };
                    respond(StatusCode::OK, canceled.await.map(|s| views::subscription(&s)))
                })
                .await
            }
            (&Method::GET, _, false) => respond(StatusCode::OK, self.read(request, &id).await),
            _ => method_not_allowed(),
        }
    }
}
