//! `POST /v1/customers/{id}/payment_methods`, `GET` the same, and
//! `POST /v1/customers/{id}/payment_methods/{pm}/default`.

use async_trait::async_trait;
use billy_aws::AwsClients;
use billy_core::payment_method::{Instrument, MethodType};
use billy_core::service;
use billy_core::{DomainError, DomainResult};
use billy_lambda::HttpFunction;
use billy_lambda::config::{Config, MissingVariable};
use billy_lambda::deps::Deps;
use billy_lambda::http::{authenticate, authenticated_write, method_not_allowed, parse_json, path_param, respond};
use billy_lambda::views;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::Deserialize;
use serde_json::json;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Card {
    number: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BankAccount {
    account_number: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Pix {
    key: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateMethod {
    #[serde(rename = "type")]
    kind: String,
    card: Option<Card>,
    bank_account: Option<BankAccount>,
    pix: Option<Pix>,
}

impl CreateMethod {
    fn instrument(self) -> DomainResult<Instrument> {
        let missing = |field: &str| {
            DomainError::invalid("parameter_missing", format!("a {field} payment method needs '{field}'"), Some(field))
        };
        match MethodType::parse(&self.kind, "type")? {
            MethodType::Card => Instrument::card(&self.card.ok_or_else(|| missing("card"))?.number),
            MethodType::BankAccount => {
                Instrument::bank_account(&self.bank_account.ok_or_else(|| missing("bank_account"))?.account_number)
            }
            MethodType::Pix => Instrument::pix(&self.pix.ok_or_else(|| missing("pix"))?.key),
        }
    }
}

#[derive(Debug)]
pub struct App {
    deps: Deps,
    /// The gateway new methods are registered with (the first configured one).
    gateway: String,
}

impl App {
    pub fn new(config: &Config, aws: &AwsClients) -> Result<Self, MissingVariable> {
        let gateway = Deps::gateways(config)
            .first()
            .map_or_else(|| "sandbox".to_owned(), |g| billy_core::gateway::PaymentGateway::name(g).to_owned());
        Ok(Self { deps: Deps::new(config, aws)?, gateway })
    }
}

#[async_trait]
impl HttpFunction for App {
    async fn handle(&self, request: Request) -> Response<Body> {
        let request = &request;
        let customer = path_param(request, "id");
        let method = path_param(request, "pm");
        let s = self.deps.services();
        match (request.method(), method.is_empty()) {
            (&Method::POST, true) => {
                authenticated_write(&self.deps, request, |ctx| async move {
                    let created = async {
                        let body: CreateMethod = parse_json(request)?;
                        service::add_payment_method(s, &ctx, &customer, body.instrument()?, &self.gateway).await
                    };
                    respond(StatusCode::CREATED, created.await.map(|m| views::payment_method(&m)))
                })
                .await
            }
            (&Method::POST, false) => {
                authenticated_write(&self.deps, request, |ctx| async move {
                    let updated = service::set_default_payment_method(s, &ctx, &customer, &method).await;
                    respond(StatusCode::OK, updated.map(|c| views::customer(&c)))
                })
                .await
            }
            (&Method::GET, true) => {
                let listed = async {
                    let ctx = authenticate(&self.deps.tenants, request).await?;
                    service::list_payment_methods(s, &ctx, &customer).await
                };
                respond(
                    StatusCode::OK,
                    listed.await.map(|ms| json!({"object": "list", "data": ms.iter().map(views::payment_method).collect::<Vec<_>>(), "has_more": false, "next_cursor": null})),
                )
            }
            _ => method_not_allowed(),
        }
    }
}
