//! `POST /v1/customers/{id}/credits`: grants credit (`{amount, currency, reason}`), or sells it
//! (`"sell": true`: a one-off invoice, charged at once, whose payment adds the credit);
//! `GET /v1/customers/{id}/balance`: the customer's balances and their latest movements.

use async_trait::async_trait;
use billy_aws::AwsClients;
use billy_core::money::Currency;
use billy_core::service::credits as service;
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
struct Credit {
    amount: i64,
    currency: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    sell: bool,
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
        let request = &request;
        let customer = path_param(request, "id");
        let p = self.deps.ports();
        let p = &p;
        match *request.method() {
            Method::GET => {
                let read = async {
                    let ctx = authenticate(&self.deps, request).await?;
                    service::balance(p, &ctx, &customer).await
                };
                respond(
                    StatusCode::OK,
                    read.await.map(|(balances, movements)| {
                        json!({
                            "object": "customer_balance", "customer": customer,
                            "balances": balances.iter().map(|b| json!({"currency": b.currency, "amount": b.amount})).collect::<Vec<_>>(),
                            "movements": movements.iter().map(views::credit_movement).collect::<Vec<_>>(),
                        })
                    }),
                )
            }
            Method::POST => {
                let customer = &customer;
                authenticated_write(&self.deps, request, |ctx| async move {
                    let body: Credit = match parse_json(request) {
                        Ok(body) => body,
                        Err(e) => return respond::<()>(StatusCode::OK, Err(e)),
                    };
                    let currency = match Currency::parse(&body.currency, "currency") {
                        Ok(c) => c,
                        Err(e) => return respond::<()>(StatusCode::OK, Err(e)),
                    };
                    if body.sell {
                        let sold = service::sell_credit(p, &ctx, customer, body.amount, currency).await;
                        respond(StatusCode::CREATED, sold.map(|i| views::invoice(&i)))
                    } else {
                        let granted =
                            service::grant_credit(p, &ctx, customer, body.amount, currency, &body.reason).await;
                        respond(StatusCode::CREATED, granted.map(|m| views::credit_movement(&m)))
                    }
                })
                .await
            }
            _ => method_not_allowed(),
        }
    }
}
