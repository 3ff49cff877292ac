//! `POST /v1/usage` (one event, or `{"events": [...]}` up to 500), idempotent on each event's own
//! `id`; `GET /v1/usage?subscription=&metric=[&at=]` the events behind one period's total, a page
//! at a time; `GET /v1/usage/summary?subscription=&metric=[&at=][&group_by=]` that total, whether
//! it is invoiced, and its split by one dimension.

use async_trait::async_trait;
use billy_aws::AwsClients;
use billy_core::ids::Id;
use billy_core::service::usage as service;
use billy_core::usage::{GRACE, NewUsage, Recorded, UsageEvent};
use billy_core::{DomainError, DomainResult};
use billy_lambda::HttpFunction;
use billy_lambda::config::{Config, MissingVariable};
use billy_lambda::deps::Deps;
use billy_lambda::http::{
    authenticate, authenticated_write, error_response, json_response, method_not_allowed, parse_json_up_to,
    query_param, respond,
};
use chrono::{DateTime, Utc};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::str::FromStr;

/// A batch of 500 events with dimensions fits well within this (API Gateway takes 10 MB).
const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// One event as a client reports it. `quantity` may be a JSON number or a decimal string.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Report {
    id: String,
    subscription: String,
    metric: String,
    quantity: Value,
    timestamp: Option<DateTime<Utc>>,
    #[serde(default)]
    dimensions: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Reported {
    Batch { events: Vec<Report> },
    One(Report),
}

impl Report {
    fn into_new(self) -> DomainResult<NewUsage> {
        let quantity = match &self.quantity {
            // A number's own text, so 12.345 stays 12.345 (no binary float in between).
            Value::Number(n) => Decimal::from_str(&n.to_string()).or_else(|_| Decimal::from_scientific(&n.to_string())),
            Value::String(s) => Decimal::from_str(s.trim()),
            _ => return Err(DomainError::invalid("quantity_invalid", "quantity must be a number", Some("quantity"))),
        }
        .map_err(|_| DomainError::invalid("quantity_invalid", "quantity must be a decimal number", Some("quantity")))?;
        Ok(NewUsage {
            id: self.id,
            subscription: Id::parse(billy_core::ids::IdKind::Subscription, &self.subscription, "subscription")?,
            metric: self.metric,
            quantity,
            timestamp: self.timestamp,
            dimensions: self.dimensions,
        })
    }
}

pub fn event_view(e: &UsageEvent) -> Value {
    json!({
        "object": "usage_event", "id": e.id, "subscription": e.subscription, "metric": e.metric,
        "quantity": e.quantity.normalize().to_string(), "timestamp": e.timestamp, "dimensions": e.dimensions,
        "period_start": e.period.start, "period_end": e.period.end, "received": e.received,
    })
}

fn outcome_view(id: &str, outcome: &DomainResult<Recorded>) -> Value {
    match outcome {
        Ok(Recorded::Counted(e)) => json!({"id": id, "status": "counted", "event": event_view(e)}),
        Ok(Recorded::Duplicate(e)) => json!({"id": id, "status": "duplicate", "event": event_view(e)}),
        Err(err) => {
            let body: Value = serde_json::from_slice(error_response(err).body().as_ref()).unwrap_or_else(|_| json!({}));
            json!({"id": id, "status": "refused", "error": body["error"]})
        }
    }
}

fn at_param(request: &Request) -> DomainResult<Option<DateTime<Utc>>> {
    query_param(request, "at")
        .map(|raw| {
            DateTime::parse_from_rfc3339(&raw)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| DomainError::invalid("parameter_invalid", "at must be an RFC 3339 time", Some("at")))
        })
        .transpose()
}

fn required(request: &Request, name: &str) -> DomainResult<String> {
    query_param(request, name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| DomainError::invalid("parameter_missing", format!("'{name}' is required"), Some(name)))
}

#[derive(Debug)]
pub struct App {
    deps: Deps,
}

impl App {
    pub fn new(config: &Config, aws: &AwsClients) -> Result<Self, MissingVariable> {
        Ok(Self { deps: Deps::new(config, aws)? })
    }

    async fn summary(&self, request: &Request) -> DomainResult<Value> {
        let ctx = authenticate(&self.deps, request).await?;
        let (subscription, metric) = (required(request, "subscription")?, required(request, "metric")?);
        let group_by = query_param(request, "group_by");
        let s = service::usage_summary(
            &self.deps.ports(),
            &ctx,
            &subscription,
            &metric,
            at_param(request)?,
            group_by.as_deref(),
        )
        .await?;
        let t = &s.total;
        Ok(json!({
            "object": "usage_summary", "subscription": t.subscription, "metric": t.metric,
            "period_start": t.period.start, "period_end": t.period.end, "closes_at": t.period.end + GRACE,
            "quantity": t.quantity.normalize().to_string(), "events": t.events, "invoiced": t.closed,
            "by_dimension": s.by_dimension.map(|(dimension, totals)| json!({
                "dimension": dimension,
                "totals": totals.iter().map(|(value, q)| json!({"value": value, "quantity": q.normalize().to_string()})).collect::<Vec<_>>(),
            })),
        }))
    }

    async fn list(&self, request: &Request) -> DomainResult<Value> {
        let ctx = authenticate(&self.deps, request).await?;
        let (subscription, metric) = (required(request, "subscription")?, required(request, "metric")?);
        let limit =
            match query_param(request, "limit") {
                None => 20,
                Some(raw) => raw.parse::<usize>().ok().filter(|l| (1..=100).contains(l)).ok_or_else(|| {
                    DomainError::invalid("parameter_invalid", "limit must be 1 to 100", Some("limit"))
                })?,
            };
        let after = query_param(request, "starting_after");
        if after.as_deref().is_some_and(str::is_empty) {
            return Err(DomainError::invalid(
                "parameter_invalid",
                "starting_after is the id of the last event of the previous page",
                Some("starting_after"),
            ));
        }
        let (events, next) =
            service::list_usage(&self.deps.ports(), &ctx, &subscription, &metric, at_param(request)?, limit, after)
                .await?;
        Ok(
            json!({"object": "list", "data": events.iter().map(event_view).collect::<Vec<_>>(), "has_more": next.is_some(), "next_cursor": next}),
        )
    }
}

#[async_trait]
impl HttpFunction for App {
    async fn handle(&self, request: Request) -> Response<Body> {
        let request = &request;
        match *request.method() {
            Method::GET if request.uri().path().ends_with("/summary") => {
                respond(StatusCode::OK, self.summary(request).await)
            }
            Method::GET => respond(StatusCode::OK, self.list(request).await),
            Method::POST => {
                authenticated_write(&self.deps, request, |ctx| async move {
                    let body: Reported = match parse_json_up_to(request, MAX_BATCH_BYTES) {
                        Ok(body) => body,
                        Err(e) => return error_response(&e),
                    };
                    let p = self.deps.ports();
                    match body {
                        Reported::One(report) => {
                            let id = report.id.clone();
                            let recorded = async {
                                let new = report.into_new()?;
                                service::report_usage(&p, &ctx, vec![new]).await?.pop().unwrap_or_else(|| {
                                    Err(DomainError::unexpected(format!("no result for usage event {id}")))
                                })
                            };
                            // The same event reported again answers as the first time.
                            match recorded.await {
                                Ok(Recorded::Counted(e) | Recorded::Duplicate(e)) => {
                                    json_response(StatusCode::CREATED, &event_view(&e))
                                }
                                Err(e) => error_response(&e),
                            }
                        }
                        Reported::Batch { events } => {
                            let ids: Vec<String> = events.iter().map(|r| r.id.clone()).collect();
                            let parsed: Vec<DomainResult<NewUsage>> =
                                events.into_iter().map(Report::into_new).collect();
                            let valid: Vec<NewUsage> = parsed.iter().filter_map(|r| r.as_ref().ok().cloned()).collect();
                            let recorded = if valid.is_empty() && !parsed.is_empty() {
                                Ok(Vec::new())
                            } else {
                                service::report_usage(&p, &ctx, valid).await
                            };
                            let mut recorded = match recorded {
                                Ok(r) => r.into_iter(),
                                Err(e) => return error_response(&e),
                            };
                            let outcomes: Vec<Value> = parsed
                                .iter()
                                .zip(&ids)
                                .map(|(p, id)| match p {
                                    Ok(_) => outcome_view(
                                        id,
                                        &recorded.next().unwrap_or_else(|| Err(DomainError::unexpected("missing"))),
                                    ),
                                    Err(e) => outcome_view(id, &Err(e.clone())),
                                })
                                .collect();
                            let count = |status: &str| outcomes.iter().filter(|o| o["status"] == status).count();
                            json_response(
                                StatusCode::OK,
                                &json!({"object": "usage_report", "counted": count("counted"),
                                    "duplicates": count("duplicate"), "refused": count("refused"), "data": outcomes}),
                            )
                        }
                    }
                })
                .await
            }
            _ => method_not_allowed(),
        }
    }
}
