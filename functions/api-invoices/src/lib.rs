//! `GET /v1/invoices` (filters: customer, subscription, status, period_from, period_to) and
//! `GET /v1/invoices/{id}`.

use async_trait::async_trait;
use billy_aws::AwsClients;
use billy_core::ids::{Id, IdKind};
use billy_core::invoice::InvoiceStatus;
use billy_core::page::PageRequest;
use billy_core::ports::InvoiceFilter;
use billy_core::schedule::parse_time;
use billy_core::service;
use billy_core::{DomainError, DomainResult};
use billy_lambda::HttpFunction;
use billy_lambda::config::{Config, MissingVariable};
use billy_lambda::deps::Deps;
use billy_lambda::http::{authenticate, method_not_allowed, path_param, query_param, query_with, respond};
use billy_lambda::views;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::Value;

fn parse_status(raw: &str) -> DomainResult<InvoiceStatus> {
    serde_json::from_value(Value::String(raw.to_owned())).map_err(|_| {
        DomainError::invalid("parameter_invalid", format!("'{raw}' is not an invoice status"), Some("status"))
    })
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
        let s = self.deps.services();
        if !id.is_empty() {
            return Ok(views::invoice(&service::get_invoice(s, &ctx, id).await?));
        }
        let filter = InvoiceFilter {
            customer: query_with(request, "customer", |r| Id::parse(IdKind::Customer, r, "customer"))?,
            subscription: query_with(request, "subscription", |r| Id::parse(IdKind::Subscription, r, "subscription"))?,
            status: query_with(request, "status", parse_status)?,
            period_from: query_with(request, "period_from", |r| parse_time(r, "period_from"))?,
            period_to: query_with(request, "period_to", |r| parse_time(r, "period_to"))?,
        };
        let page = PageRequest::parse(
            query_param(request, "limit").as_deref(),
            query_param(request, "starting_after").as_deref(),
            IdKind::Invoice,
        )?;
        Ok(views::list(service::list_invoices(s, &ctx, &filter, &page).await?, views::invoice))
    }
}

#[async_trait]
impl HttpFunction for App {
    async fn handle(&self, request: Request) -> Response<Body> {
        let id = path_param(&request, "id");
        match request.method() {
            &Method::GET => respond(StatusCode::OK, self.read(&request, &id).await),
            _ => method_not_allowed(),
        }
    }
}
