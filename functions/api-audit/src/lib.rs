//! `GET /v1/audit?entity={id}` (an entity's whole trail) and `GET /v1/customers/{id}/history`
//! (an account's trail with its balance: who owes how much and why).

use async_trait::async_trait;
use billy_aws::AwsClients;
use billy_core::journal::fold_account;
use billy_core::ports::AuditJournal;
use billy_core::service;
use billy_core::{DomainError, DomainResult};
use billy_lambda::HttpFunction;
use billy_lambda::config::{Config, MissingVariable};
use billy_lambda::deps::Deps;
use billy_lambda::http::{authenticate, method_not_allowed, path_param, query_param, respond};
use billy_lambda::views;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};

#[derive(Debug)]
pub struct App {
    deps: Deps,
}

impl App {
    pub fn new(config: &Config, aws: &AwsClients) -> Result<Self, MissingVariable> {
        Ok(Self { deps: Deps::new(config, aws)? })
    }

    async fn read(&self, request: &Request) -> DomainResult<Value> {
        let ctx = authenticate(&self.deps, request).await?;
        let customer = path_param(request, "id");
        if customer.is_empty() {
            let entity = query_param(request, "entity").ok_or_else(|| {
                DomainError::invalid(
                    "parameter_missing",
                    "give the entity whose trail you want: ?entity=<id>",
                    Some("entity"),
                )
            })?;
            let events = service::audit::entity_history(&self.deps.ports(), &ctx, &entity).await?;
            return Ok(
                json!({"object": "list", "data": events.iter().map(views::audit_event).collect::<Vec<_>>(), "has_more": false, "next_cursor": null}),
            );
        }
        let customer = service::customers::get_customer(&self.deps.ports(), &ctx, &customer).await?;
        let events = self.deps.audit.for_account(&ctx.scope, &customer.id).await?;
        let balance = fold_account(&events)?;
        Ok(json!({
            "object": "account_history",
            "customer": customer.id,
            "balance": balance.currencies.iter().map(|(c, b)| (c.to_string(), serde_json::to_value(b).unwrap_or_default())).collect::<serde_json::Map<_, _>>(),
            "lines": balance.lines,
            "events": events.iter().map(views::audit_event).collect::<Vec<_>>(),
        }))
    }
}

#[async_trait]
impl HttpFunction for App {
    async fn handle(&self, request: Request) -> Response<Body> {
        match request.method() {
            &Method::GET => respond(StatusCode::OK, self.read(&request).await),
            _ => method_not_allowed(),
        }
    }
}
