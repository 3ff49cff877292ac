//! `POST /v1/exports` (a CSV export job of the transactions ledger, with the same filters as
//! `GET /v1/transactions`) and `GET /v1/exports/{id}` (its status and, once done, a download link
//! valid for 15 minutes).

use async_trait::async_trait;
use billy_aws::AwsClients;
use billy_core::ids::Id;
use billy_core::ledger::{Export, parse_status, parse_type};
use billy_core::ports::TransactionFilter;
use billy_core::schedule::parse_time;
use billy_core::service::transactions as service;
use billy_core::{DomainError, DomainResult};
use billy_files::S3Files;
use billy_lambda::HttpFunction;
use billy_lambda::config::{Config, MissingVariable};
use billy_lambda::deps::Deps;
use billy_lambda::http::{authenticate, authenticated_write, method_not_allowed, parse_json, path_param, respond};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Filters {
    customer: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    status: Option<String>,
    created_from: Option<String>,
    created_to: Option<String>,
    amount_min: Option<i64>,
    amount_max: Option<i64>,
    item: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateExport {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    filters: Filters,
}

impl CreateExport {
    fn filter(self) -> DomainResult<TransactionFilter> {
        if self.kind != "transactions" {
            return Err(DomainError::invalid("parameter_invalid", "type must be 'transactions'", Some("type")));
        }
        let f = self.filters;
        Ok(TransactionFilter {
            customer: f
                .customer
                .map(|c| Id::parse(billy_core::ids::IdKind::Customer, &c, "filters.customer"))
                .transpose()?,
            invoice: None,
            kind: f.kind.as_deref().map(parse_type).transpose()?,
            status: f.status.as_deref().map(parse_status).transpose()?,
            created_from: f.created_from.as_deref().map(|t| parse_time(t, "filters.created_from")).transpose()?,
            created_to: f.created_to.as_deref().map(|t| parse_time(t, "filters.created_to")).transpose()?,
            amount_min: f.amount_min,
            amount_max: f.amount_max,
            item: f.item.map(|i| i.trim().to_owned()),
        })
    }
}

pub fn view(e: &Export, url: Option<String>) -> Value {
    json!({
        "id": e.id, "object": "export", "created": e.created, "type": "transactions", "status": e.status,
        "filters": e.filter, "rows": e.rows, "bytes": e.bytes, "completed": e.completed, "url": url,
        "livemode": e.livemode,
    })
}

#[derive(Debug)]
pub struct App {
    deps: Deps,
    files: S3Files,
}

impl App {
    pub fn new(config: &Config, aws: &AwsClients, files: S3Files) -> Result<Self, MissingVariable> {
        Ok(Self { deps: Deps::new(config, aws)?, files })
    }
}

#[async_trait]
impl HttpFunction for App {
    async fn handle(&self, request: Request) -> Response<Body> {
        let request = &request;
        let id = path_param(request, "id");
        let p = self.deps.ports();
        let p = &p;
        match (request.method(), id.is_empty()) {
            (&Method::POST, true) => {
                authenticated_write(&self.deps, request, |ctx| async move {
                    let created = async {
                        let body: CreateExport = parse_json(request)?;
                        service::create_export(p, &ctx, body.filter()?).await
                    };
                    respond(StatusCode::CREATED, created.await.map(|e| view(&e, None)))
                })
                .await
            }
            (&Method::GET, false) => {
                let read = async {
                    let ctx = authenticate(&self.deps, request).await?;
                    let export = service::get_export(p, &ctx, &id).await?;
                    let url = service::export_link(&self.files, &export).await?;
                    Ok::<_, DomainError>(view(&export, url))
                };
                respond(StatusCode::OK, read.await)
            }
            _ => method_not_allowed(),
        }
    }
}
