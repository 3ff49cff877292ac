//! `POST /v1/subscriptions` (optionally with a coupon, or a fixed term: `end_at` or `periods`),
//! `GET /v1/subscriptions`, `GET /v1/subscriptions/{id}`, `POST /v1/subscriptions/{id}/cancel`,
//! `POST /v1/subscriptions/{id}/change` (`effective`: `now`, prorated, or `next_period`) and
//! `DELETE` the same (withdraws a scheduled change), `POST /v1/subscriptions/{id}/items` (one-off
//! items on the next invoice), `POST /v1/subscriptions/{id}/discount` (a coupon).

use async_trait::async_trait;
use billy_aws::AwsClients;
use billy_core::ids::IdKind;
use billy_core::schedule::parse_time;
use billy_core::service::subscriptions::{self as service, NewSubscription};
use billy_core::{DomainError, DomainResult};
use billy_lambda::HttpFunction;
use billy_lambda::config::{Config, MissingVariable};
use billy_lambda::deps::Deps;
use billy_lambda::http::{
    authenticate, authenticated_write, method_not_allowed, page, parse_json, path_param, respond, route_action,
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
    coupon: Option<String>,
    end_at: Option<String>,
    periods: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Change {
    plan: String,
    #[serde(default = "next_period")]
    effective: String,
}

fn next_period() -> String {
    "next_period".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PendingItem {
    description: String,
    #[serde(default = "one")]
    quantity: i64,
    unit_amount: i64,
}

fn one() -> i64 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApplyCoupon {
    coupon: String,
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
        let ctx = authenticate(&self.deps, request).await?;
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
        let action = if id.is_empty() { String::new() } else { route_action(request) };
        let action = action.as_str();
        let p = self.deps.ports();
        let s = &p;
        let view = |r: DomainResult<billy_core::subscription::Subscription>| r.map(|s| views::subscription(&s));
        match (request.method(), id.is_empty(), action) {
            (&Method::POST, true, _) => {
                authenticated_write(&self.deps, request, |ctx| async move {
                    let created = async {
                        let body: CreateSubscription = parse_json(request)?;
                        let start = body.start.as_deref().map(|s| parse_time(s, "start")).transpose()?;
                        let end_at = body.end_at.as_deref().map(|s| parse_time(s, "end_at")).transpose()?;
                        let input = NewSubscription {
                            customer: body.customer,
                            plan: body.plan,
                            start,
                            payment_method: body.payment_method,
                            coupon: body.coupon,
                            end_at,
                            periods: body.periods,
                        };
                        service::create_subscription(s, &ctx, input).await
                    };
                    respond(StatusCode::CREATED, view(created.await))
                })
                .await
            }
            (&Method::POST, false, "cancel") => {
                authenticated_write(&self.deps, request, |ctx| async move {
                    let canceled = async {
                        let body: Cancel = parse_json(request)?;
                        service::cancel_subscription(s, &ctx, &id, body.at_period_end).await
                    };
                    respond(StatusCode::OK, view(canceled.await))
                })
                .await
            }
            (&Method::POST, false, "change") => {
                authenticated_write(&self.deps, request, |ctx| async move {
                    let changed = async {
                        let body: Change = parse_json(request)?;
                        let effective = match body.effective.as_str() {
                            "now" => service::Effective::Now,
                            "next_period" => service::Effective::NextPeriod,
                            _ => {
                                return Err(DomainError::invalid(
                                    "parameter_invalid",
                                    "effective is now or next_period",
                                    Some("effective"),
                                ));
                            }
                        };
                        service::change_plan(s, &ctx, &id, &body.plan, effective).await
                    };
                    respond(
                        StatusCode::OK,
                        changed.await.map(|c| {
                            let mut v = views::subscription(&c.subscription);
                            v["proration_invoice"] = c.invoice.as_ref().map_or(Value::Null, views::invoice);
                            v["proration_credit"] = c.credit.as_ref().map_or(Value::Null, views::credit_movement);
                            v
                        }),
                    )
                })
                .await
            }
            (&Method::DELETE, false, "change") => {
                authenticated_write(&self.deps, request, |ctx| async move {
                    respond(StatusCode::OK, view(service::withdraw_change(s, &ctx, &id).await))
                })
                .await
            }
            (&Method::POST, false, "items") => {
                authenticated_write(&self.deps, request, |ctx| async move {
                    let added = async {
                        let body: PendingItem = parse_json(request)?;
                        let item = billy_core::service::invoices::NewItem {
                            description: body.description,
                            quantity: body.quantity,
                            unit_amount: body.unit_amount,
                        };
                        service::add_pending_item(s, &ctx, &id, item).await
                    };
                    respond(StatusCode::OK, view(added.await))
                })
                .await
            }
            (&Method::POST, false, "discount") => {
                authenticated_write(&self.deps, request, |ctx| async move {
                    let applied = async {
                        let body: ApplyCoupon = parse_json(request)?;
                        service::apply_coupon(s, &ctx, &id, &body.coupon).await
                    };
                    respond(StatusCode::OK, view(applied.await))
                })
                .await
            }
            (&Method::GET, _, "") => respond(StatusCode::OK, self.read(request, &id).await),
            _ => method_not_allowed(),
        }
    }
}
