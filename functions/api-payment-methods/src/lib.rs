//! `POST /v1/customers/{id}/payment_methods`, `GET` the same, and
//! `POST /v1/customers/{id}/payment_methods/{pm}/default`; and the same three for payout
//! destinations (`/payout_destinations`, `{pd}`: bank accounts and pix keys only), which are
//! tokenised and masked the same way.

use async_trait::async_trait;
use billy_aws::AwsClients;
use billy_core::payment_method::{GatewayToken, MethodDetails, MethodType, NewMethod, SensitiveNumber};
use billy_core::service::payment_methods::{self as service, Instrument};
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

/// A number as a client may send it (test mode only); never kept, logged or echoed.
#[derive(Deserialize)]
#[serde(transparent)]
struct RawNumber(String);

impl std::fmt::Debug for RawNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawNumber(…)")
    }
}

/// `card: {number}`, `bank_account: {account_number}`, `pix: {key}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Nested {
    #[serde(alias = "account_number", alias = "key")]
    number: RawNumber,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Shown {
    last4: Option<String>,
    brand: Option<String>,
    exp_month: Option<u8>,
    exp_year: Option<u16>,
}

/// What `POST /v1/customers/{id}/payment_methods` takes: gateway tokens (`gateway` + `token`, or
/// `tokens: [...]`), or in test mode a sandbox test number (`number`, or `card.number`,
/// `bank_account.account_number`, `pix.key`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateMethod {
    #[serde(rename = "type")]
    kind: String,
    gateway: Option<String>,
    token: Option<String>,
    /// The gateway's own customer the token belongs to (Stripe's `cus_…`, Adyen's shopper
    /// reference), with `gateway` and `token`.
    customer: Option<String>,
    tokens: Option<Vec<GatewayToken>>,
    number: Option<RawNumber>,
    card: Option<Nested>,
    bank_account: Option<Nested>,
    pix: Option<Nested>,
    /// What the client knows of a tokenised method (its gateway may tell more).
    details: Option<Shown>,
}

impl CreateMethod {
    fn into_new_method(self) -> DomainResult<NewMethod> {
        let kind = MethodType::parse(&self.kind, "type")?;
        let nested = match kind {
            MethodType::Card => self.card,
            MethodType::BankAccount => self.bank_account,
            MethodType::Pix => self.pix,
        };
        let number = self.number.or(nested.map(|n| n.number));
        if self.customer.is_some() && self.token.is_none() {
            return Err(DomainError::invalid(
                "parameter_invalid",
                "customer goes with gateway and token",
                Some("customer"),
            ));
        }
        let tokens = match (self.tokens, self.gateway, self.token) {
            (Some(tokens), None, None) => Some(tokens),
            (None, Some(gateway), Some(token)) => Some(vec![GatewayToken { gateway, token, customer: self.customer }]),
            (None, None, None) => None,
            _ => {
                return Err(DomainError::invalid(
                    "parameter_invalid",
                    "give either 'gateway' and 'token', or 'tokens'",
                    Some("tokens"),
                ));
            }
        };
        match (tokens, number) {
            (Some(tokens), None) => {
                let shown = self.details.unwrap_or(Shown { last4: None, brand: None, exp_month: None, exp_year: None });
                Ok(NewMethod::Tokens {
                    kind,
                    tokens,
                    details: MethodDetails {
                        brand: shown.brand,
                        last4: shown.last4.unwrap_or_default(),
                        exp_month: shown.exp_month,
                        exp_year: shown.exp_year,
                        fingerprint: None,
                    },
                })
            }
            (None, Some(n)) => Ok(NewMethod::TestNumber { kind, number: SensitiveNumber::parse(kind, &n.0)? }),
            (Some(_), Some(_)) => Err(DomainError::invalid(
                "parameter_invalid",
                "give a gateway token or (in test mode) a test number, not both",
                Some("number"),
            )),
            (None, None) => Err(DomainError::invalid(
                "parameter_missing",
                "give the gateway's token ('gateway' and 'token'), or in test mode a test number",
                Some("token"),
            )),
        }
    }
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
        let (instrument, method) = if request.uri().path().contains("/payout_destinations") {
            (Instrument::PayoutDestination, path_param(request, "pd"))
        } else {
            (Instrument::PaymentMethod, path_param(request, "pm"))
        };
        let view = match instrument {
            Instrument::PaymentMethod => views::payment_method,
            Instrument::PayoutDestination => views::payout_destination,
        };
        let p = self.deps.ports();
        let s = &p;
        match (request.method(), method.is_empty()) {
            (&Method::POST, true) => {
                authenticated_write(&self.deps, request, |ctx| async move {
                    let created = async {
                        let body: CreateMethod = parse_json(request)?;
                        service::add_instrument(s, &ctx, instrument, &customer, body.into_new_method()?).await
                    };
                    respond(StatusCode::CREATED, created.await.map(|m| view(&m)))
                })
                .await
            }
            (&Method::POST, false) => {
                authenticated_write(&self.deps, request, |ctx| async move {
                    let updated = service::set_default(s, &ctx, instrument, &customer, &method).await;
                    respond(StatusCode::OK, updated.map(|c| views::customer(&c)))
                })
                .await
            }
            (&Method::GET, true) => {
                let listed = async {
                    let ctx = authenticate(&self.deps, request).await?;
                    service::list(s, &ctx, instrument, &customer).await
                };
                respond(
                    StatusCode::OK,
                    listed.await.map(|ms| json!({"object": "list", "data": ms.iter().map(view).collect::<Vec<_>>(), "has_more": false, "next_cursor": null})),
                )
            }
            _ => method_not_allowed(),
        }
    }
}
