//! `PUT /v1/gateway_accounts/{gateway}`: connects the tenant's own account at a gateway (Stripe,
//! Adyen) or replaces its credentials, which are sealed with KMS at once; `GET
//! /v1/gateway_accounts`: the accounts connected. Answers show which credentials are set and the
//! account's own webhook address, never a credential.

use async_trait::async_trait;
use billy_aws::AwsClients;
use billy_core::DomainError;
use billy_core::gateway_account::{AccountSecrets, CONNECTABLE, GatewayAccount};
use billy_core::service::gateway_accounts as service;
use billy_lambda::HttpFunction;
use billy_lambda::config::{Config, MissingVariable};
use billy_lambda::deps::Deps;
use billy_lambda::http::{authenticate, authenticated_write, method_not_allowed, parse_json, path_param, respond};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::Deserialize;
use serde_json::{Value, json};

/// The body of a PUT: the credentials, and Adyen's merchant account.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Connect {
    api_key: String,
    webhook_secret: Option<String>,
    previous_webhook_secret: Option<String>,
    hmac_key: Option<String>,
    merchant_account: Option<String>,
}

pub fn view(account: &GatewayAccount) -> Value {
    let view = account.view();
    json!({
        "object": "gateway_account",
        "id": view.id,
        "gateway": view.gateway,
        "merchant_account": view.merchant_account,
        "secrets_set": view.secrets_set,
        "webhook_url": format!("/v1/webhooks/{}/{}", view.gateway, view.id),
        "livemode": view.livemode,
        "updated": view.updated.timestamp(),
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
}

#[async_trait]
impl HttpFunction for App {
    async fn handle(&self, request: Request) -> Response<Body> {
        let request = &request;
        let p = self.deps.ports();
        let p = &p;
        match *request.method() {
            Method::GET => {
                let read = async {
                    let ctx = authenticate(&self.deps, request).await?;
                    service::list_accounts(p, &ctx).await
                };
                respond(
                    StatusCode::OK,
                    read.await.map(|accounts| {
                        json!({"object": "list", "data": accounts.iter().map(view).collect::<Vec<_>>(), "has_more": false})
                    }),
                )
            }
            Method::PUT => {
                let gateway = path_param(request, "gateway");
                authenticated_write(&self.deps, request, |ctx| async move {
                    let put = async {
                        if !CONNECTABLE.contains(&gateway.as_str()) {
                            return Err(DomainError::invalid(
                                "gateway_unknown",
                                format!("accounts can be connected at {}", CONNECTABLE.join(" and ")),
                                Some("gateway"),
                            ));
                        }
                        let body: Connect = parse_json(request)?;
                        let secrets = AccountSecrets {
                            api_key: body.api_key,
                            webhook_secret: body.webhook_secret,
                            hmac_key: body.hmac_key,
                            previous_webhook_secret: body.previous_webhook_secret,
                        };
                        service::put_account(p, &ctx, &gateway, secrets, body.merchant_account).await
                    };
                    respond(StatusCode::OK, put.await.map(|a| view(&a)))
                })
                .await
            }
            _ => method_not_allowed(),
        }
    }
}
