//! `GET /v1/settings` and `PATCH /v1/settings`: the tenant's refund window, dunning policy, payout
//! retry policy, settlement mode and commission (defaults until it sets them); `PUT /v1/gateway_routes`: its gateway routing rules, replaced
//! whole and checked against the gateways it can use, taking effect from the next charge.

use async_trait::async_trait;
use billy_aws::AwsClients;
use billy_core::dunning::FinalAction;
use billy_core::plan::Commission;
use billy_core::routing::RoutingTable;
use billy_core::service::settings as service;
use billy_core::settings::{SettingsPatch, TenantSettings};
use billy_core::settlement::SettlementMode;
use billy_lambda::HttpFunction;
use billy_lambda::config::{Config, MissingVariable};
use billy_lambda::deps::Deps;
use billy_lambda::http::{authenticate, authenticated_write, method_not_allowed, parse_json, respond};
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Dunning {
    retry_gaps_hours: Option<Vec<u32>>,
    final_action: Option<FinalAction>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PayoutRetry {
    retry_gaps_hours: Vec<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Patch {
    refund_window_days: Option<u32>,
    dunning: Option<Dunning>,
    payout_retry: Option<PayoutRetry>,
    /// `per_invoice` or `monthly_net`.
    settlement: Option<SettlementMode>,
    /// The tenant's cut of metered payouts whose plan names none: `{percent, fixed_amount?}`.
    commission: Option<Commission>,
}

pub fn view(s: &TenantSettings) -> Value {
    json!({
        "object": "settings",
        "refund_window_days": s.refund.window_days,
        "dunning": {
            "retry_gaps_hours": s.dunning.retry_gaps_hours,
            "max_attempts": s.dunning.max_attempts(),
            "final_action": s.dunning.final_action,
        },
        "payout_retry": {
            "retry_gaps_hours": s.payout_retry.retry_gaps_hours,
            "max_attempts": s.payout_retry.max_attempts(),
        },
        "settlement": s.settlement,
        "commission": s.commission,
        "gateway_routes": s.routing,
        "version": s.version,
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
        if request.uri().path().ends_with("/gateway_routes") {
            if request.method() != Method::PUT {
                return method_not_allowed();
            }
            return authenticated_write(&self.deps, request, |ctx| async move {
                let updated = async {
                    let table: RoutingTable = parse_json(request)?;
                    service::update_routes(p, &ctx, table).await
                };
                respond(StatusCode::OK, updated.await.map(|s| view(&s)))
            })
            .await;
        }
        match *request.method() {
            Method::GET => {
                let read = async {
                    let ctx = authenticate(&self.deps, request).await?;
                    service::get_settings(p, &ctx).await
                };
                respond(StatusCode::OK, read.await.map(|s| view(&s)))
            }
            Method::PATCH => {
                authenticated_write(&self.deps, request, |ctx| async move {
                    let updated = async {
                        let body: Patch = parse_json(request)?;
                        let dunning = body.dunning.unwrap_or(Dunning { retry_gaps_hours: None, final_action: None });
                        let patch = SettingsPatch {
                            refund_window_days: body.refund_window_days,
                            retry_gaps_hours: dunning.retry_gaps_hours,
                            final_action: dunning.final_action,
                            payout_retry_gaps_hours: body.payout_retry.map(|r| r.retry_gaps_hours),
                            settlement: body.settlement,
                            commission: body.commission,
                        };
                        service::update_settings(p, &ctx, patch).await
                    };
                    respond(StatusCode::OK, updated.await.map(|s| view(&s)))
                })
                .await
            }
            _ => method_not_allowed(),
        }
    }
}
