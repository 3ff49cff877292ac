//! `GET /v1/transactions`: the ledger of money movements, filtered by customer, type, status,
//! creation time (`created_from`, `created_to`), amount (`amount_min`, `amount_max`) and item text,
//! with cursor pagination; `Accept: text/csv` answers CSV for accounting (small results inline,
//! larger ones through `POST /v1/exports`).

use async_trait::async_trait;
use billy_aws::AwsClients;
use billy_core::DomainResult;
use billy_core::ids::{Id, IdKind};
use billy_core::ledger::{parse_status, parse_type};
use billy_core::ports::TransactionFilter;
use billy_core::schedule::parse_time;
use billy_core::service::transactions as service;
use billy_lambda::HttpFunction;
use billy_lambda::config::{Config, MissingVariable};
use billy_lambda::deps::Deps;
use billy_lambda::http::{authenticate, error_response, method_not_allowed, page, query_param, query_with, respond};
use billy_lambda::views;
use lambda_http::http::{Method, StatusCode, header};
use lambda_http::{Body, Request, Response};

fn amount(raw: &str, param: &str) -> DomainResult<i64> {
    raw.parse::<i64>().map_err(|_| {
        billy_core::DomainError::invalid(
            "parameter_invalid",
            format!("{param} must be a whole number of minor units"),
            Some(param),
        )
    })
}

/// The ledger filters of a request's query string.
pub fn filter(request: &Request) -> DomainResult<TransactionFilter> {
    Ok(TransactionFilter {
        customer: query_with(request, "customer", |r| Id::parse(IdKind::Customer, r, "customer"))?,
        invoice: query_with(request, "invoice", |r| Id::parse(IdKind::Invoice, r, "invoice"))?,
        kind: query_with(request, "type", parse_type)?,
        status: query_with(request, "status", parse_status)?,
        created_from: query_with(request, "created_from", |r| parse_time(r, "created_from"))?,
        created_to: query_with(request, "created_to", |r| parse_time(r, "created_to"))?,
        amount_min: query_with(request, "amount_min", |r| amount(r, "amount_min"))?,
        amount_max: query_with(request, "amount_max", |r| amount(r, "amount_max"))?,
        item: query_param(request, "item").map(|i| i.trim().to_owned()),
    })
}

fn wants_csv(request: &Request) -> bool {
    request.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("text/csv"))
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
        if request.method() != Method::GET {
            return method_not_allowed();
        }
        let p = self.deps.ports();
        let ctx = match authenticate(&self.deps, &request).await {
            Ok(ctx) => ctx,
            Err(e) => return error_response(&e),
        };
        let filter = match filter(&request) {
            Ok(f) => f,
            Err(e) => return error_response(&e),
        };
        if wants_csv(&request) {
            return match service::csv_inline(&p, &ctx, &filter).await {
                Ok(csv) => {
                    let mut response = Response::new(Body::Text(csv));
                    response.headers_mut().insert(
                        header::CONTENT_TYPE,
                        "text/csv; charset=utf-8".parse().unwrap_or(header::HeaderValue::from_static("text/csv")),
                    );
                    response
                }
                Err(e) => error_response(&e),
            };
        }
        let listed = async {
            let page = page(&request, IdKind::Transaction)?;
            service::list_transactions(&p, &ctx, &filter, &page).await
        };
        respond(StatusCode::OK, listed.await.map(|page| views::list(page, views::transaction)))
    }
}
