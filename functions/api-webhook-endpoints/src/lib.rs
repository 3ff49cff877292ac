//! Outgoing webhook endpoints: `POST /v1/webhook_endpoints` registers one (its signing secret is
//! in that answer only), `GET` lists them or reads one, `DELETE` removes one,
//! `POST …/{id}/rotate_secret` replaces the secret (the old one keeps signing for an overlap),
//! `GET …/{id}/deliveries` lists its deliveries with every attempt, and
//! `POST …/{id}/deliveries/{delivery}/retry` sends one again now.

use async_trait::async_trait;
use billy_aws::AwsClients;
use billy_aws::webhooks::HttpWebhookSender;
use billy_core::ids::IdKind;
use billy_core::page::Page;
use billy_core::ports::QueuePublisher;
use billy_core::service::webhooks as service;
use billy_core::{DomainError, DomainResult};
use billy_lambda::HttpFunction;
use billy_lambda::config::{Config, MissingVariable};
use billy_lambda::deps::Deps;
use billy_lambda::http::{
    authenticate, authenticated_write, method_not_allowed, page, parse_json, path_param, respond, route_action,
};
use billy_lambda::views;
use chrono::Duration;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Create {
    url: String,
    enabled_events: Vec<String>,
    description: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rotate {
    /// How long the replaced secret keeps signing (0 to 168 hours; 24 by default).
    expire_previous_in_hours: Option<i64>,
}

#[derive(Debug)]
pub struct App {
    deps: Deps,
    sender: HttpWebhookSender,
    delivery_queue: String,
}

impl App {
    pub fn new(config: &Config, aws: &AwsClients) -> Result<Self, MissingVariable> {
        Ok(Self {
            deps: Deps::new(config, aws)?,
            sender: HttpWebhookSender::from_setting(config.get("WEBHOOK_LOCAL_ENDPOINTS")),
            delivery_queue: config.require("DELIVERY_QUEUE_URL")?.to_owned(),
        })
    }

    async fn read(&self, request: &Request, id: &str, deliveries: bool) -> DomainResult<Value> {
        let ctx = authenticate(&self.deps, request).await?;
        let p = self.deps.ports();
        if deliveries {
            let page = page(request, IdKind::WebhookDelivery)?;
            return Ok(views::list(service::list_deliveries(&p, &ctx, id, &page).await?, views::webhook_delivery));
        }
        if id.is_empty() {
            // At most 16 per tenant and mode: one page, always whole.
            let all = Page { data: service::list_endpoints(&p, &ctx).await?, has_more: false, next_cursor: None };
            return Ok(views::list(all, views::webhook_endpoint));
        }
        Ok(views::webhook_endpoint(&service::get_endpoint(&p, &ctx, id).await?))
    }
}

fn with_secret(created: service::Created) -> Value {
    let mut v = views::webhook_endpoint(&created.endpoint);
    v["secret"] = json!(created.secret);
    v
}

#[async_trait]
impl HttpFunction for App {
    async fn handle(&self, request: Request) -> Response<Body> {
        let request = &request;
        let id = path_param(request, "id");
        let delivery = path_param(request, "delivery");
        let action = route_action(request);
        let p = self.deps.ports();
        let p = &p;
        match (request.method(), id.is_empty(), action.as_str()) {
            (&Method::POST, true, _) => {
                authenticated_write(&self.deps, request, |ctx| async move {
                    let created = async {
                        let body: Create = parse_json(request)?;
                        service::create_endpoint(
                            p,
                            &self.sender,
                            &ctx,
                            &body.url,
                            &body.enabled_events,
                            body.description,
                        )
                        .await
                    };
                    respond(StatusCode::CREATED, created.await.map(with_secret))
                })
                .await
            }
            (&Method::POST, false, "rotate_secret") => {
                authenticated_write(&self.deps, request, |ctx| async move {
                    let rotated = async {
                        let body: Rotate =
                            if request.body().is_empty() { Rotate::default() } else { parse_json(request)? };
                        let overlap = body.expire_previous_in_hours.map(|h| {
                            Duration::try_hours(h).ok_or_else(|| {
                                DomainError::invalid(
                                    "overlap_invalid",
                                    "hours out of range",
                                    Some("expire_previous_in_hours"),
                                )
                            })
                        });
                        service::rotate_secret(p, &ctx, &id, overlap.transpose()?).await
                    };
                    respond(StatusCode::OK, rotated.await.map(with_secret))
                })
                .await
            }
            (&Method::POST, false, "retry") if !delivery.is_empty() => {
                authenticated_write(&self.deps, request, |ctx| async move {
                    let retried = async {
                        let (d, message) = service::retry_delivery(p, &ctx, &id, &delivery).await?;
                        // If this send is lost the delivery is still due, and the sweeper sends it.
                        if let Err(e) = self.deps.queue.send(&self.delivery_queue, &[message]).await {
                            tracing::warn!(error = %e, "retry not queued; the sweeper will run it");
                        }
                        Ok(d)
                    };
                    respond(StatusCode::ACCEPTED, retried.await.map(|d| views::webhook_delivery(&d)))
                })
                .await
            }
            (&Method::DELETE, false, _) => {
                authenticated_write(&self.deps, request, |ctx| async move {
                    let deleted = service::delete_endpoint(p, &ctx, &id).await;
                    respond(
                        StatusCode::OK,
                        deleted.map(|e| json!({"id": e.id, "object": "webhook_endpoint", "deleted": true})),
                    )
                })
                .await
            }
            (&Method::GET, _, "deliveries") => respond(StatusCode::OK, self.read(request, &id, true).await),
            (&Method::GET, _, _) => respond(StatusCode::OK, self.read(request, &id, false).await),
            _ => method_not_allowed(),
        }
    }
}
