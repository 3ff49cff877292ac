//! `POST /v1/plans`, `GET /v1/plans`, `GET /v1/plans/{id}`. Plans are immutable once created.

use async_trait::async_trait;
use billy_aws::AwsClients;
use billy_core::ids::IdKind;
use billy_core::money::Currency;
use billy_core::plan::{Commission, Meter, NewPlan, PlanKind, Pricing};
use billy_core::ports::PlanRepository;
use billy_core::schedule::{Cadence, Frequency};
use billy_core::service;
use billy_core::{DomainError, DomainResult};
use billy_lambda::HttpFunction;
use billy_lambda::config::{Config, MissingVariable};
use billy_lambda::deps::Deps;
use billy_lambda::http::{
    authenticate, authenticated_write, method_not_allowed, page, parse_json, path_param, respond,
};
use billy_lambda::views;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreatePlan {
    name: String,
    description: Option<String>,
    currency: String,
    frequency: String,
    #[serde(default = "one")]
    interval: u32,
    trial_period_days: Option<u32>,
    /// `fixed_debit` when omitted: amount, currency and frequency make a classic plan.
    #[serde(default = "fixed_debit")]
    kind: String,
    /// The price of a fixed plan, or the base amount of a metered one (default 0).
    amount: Option<i64>,
    /// One metered component (`metric` + `pricing`), or several in `meters`.
    metric: Option<String>,
    pricing: Option<Pricing>,
    meters: Option<Vec<Meter>>,
    commission: Option<Commission>,
}

fn one() -> u32 {
    1
}

fn fixed_debit() -> String {
    "fixed_debit".to_owned()
}

impl CreatePlan {
    fn into_new_plan(self) -> DomainResult<NewPlan> {
        let need = |field: &str| {
            DomainError::invalid("parameter_missing", format!("a {} plan needs '{field}'", self.kind), Some(field))
        };
        let metered = self.kind.starts_with("metered");
        let meters = || -> DomainResult<Vec<Meter>> {
            match (&self.meters, &self.metric, &self.pricing) {
                (Some(meters), None, None) => Ok(meters.clone()),
                (None, Some(metric), Some(pricing)) => {
                    Ok(vec![Meter { metric: metric.clone(), pricing: pricing.clone() }])
                }
                (None, None, None) => Err(need("meters")),
                (None, Some(_), None) => Err(need("pricing")),
                (None, None, Some(_)) => Err(need("metric")),
                _ => Err(DomainError::invalid(
                    "parameter_invalid",
                    "give either 'meters' or one 'metric' with its 'pricing'",
                    Some("meters"),
                )),
            }
        };
        if !metered && (self.meters.is_some() || self.metric.is_some() || self.pricing.is_some()) {
            return Err(DomainError::invalid(
                "parameter_invalid",
                format!("a {} plan has no metered components", self.kind),
                Some("meters"),
            ));
        }
        let kind = match self.kind.as_str() {
            "fixed_debit" => PlanKind::FixedDebit { amount: self.amount.ok_or_else(|| need("amount"))? },
            "fixed_payout" => PlanKind::FixedPayout { amount: self.amount.ok_or_else(|| need("amount"))? },
            "metered_debit" => PlanKind::MeteredDebit { base_amount: self.amount.unwrap_or(0), meters: meters()? },
            "metered_payout" => PlanKind::MeteredPayout {
                base_amount: self.amount.unwrap_or(0),
                meters: meters()?,
                // None: the tenant's commission (settings) applies when each period is priced.
                commission: self.commission.clone(),
            },
            _ => {
                return Err(DomainError::invalid(
                    "kind_invalid",
                    "kind must be one of fixed_debit, metered_debit, fixed_payout, metered_payout",
                    Some("kind"),
                ));
            }
        };
        Ok(NewPlan {
            name: self.name,
            description: self.description,
            currency: Currency::parse(&self.currency, "currency")?,
            cadence: Cadence::new(Frequency::parse(&self.frequency)?, self.interval)?,
            trial_period_days: self.trial_period_days,
            kind,
        })
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

    async fn read(&self, request: &Request, id: &str) -> DomainResult<Value> {
        let ctx = authenticate(&self.deps, request).await?;
        if id.is_empty() {
            let page = page(request, IdKind::Plan)?;
            Ok(views::list(self.deps.plans.list(&ctx.scope, &page).await?, views::plan))
        } else {
            Ok(views::plan(&service::plans::get_plan(&self.deps.ports(), &ctx, id, "").await?))
        }
    }
}

#[async_trait]
impl HttpFunction for App {
    async fn handle(&self, request: Request) -> Response<Body> {
        let request = &request;
        let id = path_param(request, "id");
        match (request.method(), id.is_empty()) {
            (&Method::POST, true) => {
                authenticated_write(&self.deps, request, |ctx| async move {
                    let created = async {
                        let body: CreatePlan = parse_json(request)?;
                        service::plans::create_plan(&self.deps.ports(), &ctx, body.into_new_plan()?).await
                    };
                    respond(StatusCode::CREATED, created.await.map(|p| views::plan(&p)))
                })
                .await
            }
            (&Method::GET, _) => respond(StatusCode::OK, self.read(request, &id).await),
            _ => method_not_allowed(),
        }
    }
}
