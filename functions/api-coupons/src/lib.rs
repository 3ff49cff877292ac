//! `POST /v1/coupons` (`percent_off`, or `amount_off` with `currency`; `duration`: `once`,
//! `repeating` with `duration_in_periods`, or `forever`), `GET /v1/coupons`, `GET /v1/coupons/{id}`.

use async_trait::async_trait;
use billy_aws::AwsClients;
use billy_core::coupon::{CouponDuration, Off};
use billy_core::ids::IdKind;
use billy_core::money::Currency;
use billy_core::service::coupons as service;
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
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateCoupon {
    name: String,
    percent_off: Option<Decimal>,
    amount_off: Option<i64>,
    currency: Option<String>,
    duration: String,
    duration_in_periods: Option<u32>,
}

impl CreateCoupon {
    fn parts(&self) -> DomainResult<(Off, CouponDuration)> {
        let off = match (self.percent_off, self.amount_off, &self.currency) {
            (Some(p), None, None) => Off::Percent(p),
            (None, Some(amount), Some(c)) => Off::Amount { amount, currency: Currency::parse(c, "currency")? },
            (None, Some(_), None) => {
                return Err(DomainError::invalid(
                    "parameter_missing",
                    "amount_off needs its currency",
                    Some("currency"),
                ));
            }
            _ => {
                return Err(DomainError::invalid(
                    "parameter_invalid",
                    "give percent_off, or amount_off with currency",
                    Some("percent_off"),
                ));
            }
        };
        let duration = match (self.duration.as_str(), self.duration_in_periods) {
            ("once", None) => CouponDuration::Once,
            ("forever", None) => CouponDuration::Forever,
            ("repeating", Some(n)) => CouponDuration::Repeating { duration_in_periods: n },
            ("repeating", None) => {
                return Err(DomainError::invalid(
                    "parameter_missing",
                    "a repeating coupon needs duration_in_periods",
                    Some("duration_in_periods"),
                ));
            }
            _ => {
                return Err(DomainError::invalid(
                    "parameter_invalid",
                    "duration is once, forever, or repeating with duration_in_periods",
                    Some("duration"),
                ));
            }
        };
        Ok((off, duration))
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
        let p = self.deps.ports();
        if id.is_empty() {
            let page = page(request, IdKind::Coupon)?;
            Ok(views::list(service::list_coupons(&p, &ctx, &page).await?, views::coupon))
        } else {
            Ok(views::coupon(&service::get_coupon(&p, &ctx, id, "").await?))
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
                        let body: CreateCoupon = parse_json(request)?;
                        let (off, duration) = body.parts()?;
                        service::create_coupon(&self.deps.ports(), &ctx, &body.name, off, duration).await
                    };
                    respond(StatusCode::CREATED, created.await.map(|c| views::coupon(&c)))
                })
                .await
            }
            (&Method::GET, _) => respond(StatusCode::OK, self.read(request, &id).await),
            _ => method_not_allowed(),
        }
    }
}
