//! `POST /v1/invoices` (a one-off draft), `POST /v1/invoices/{id}/items`,
//! `POST /v1/invoices/{id}/charge` (finalize; the charge follows from the announcement; on a payout that failed for good, one more attempt now), `GET /v1/invoices` (filters:
//! customer, subscription, status, period_from, period_to) and `GET /v1/invoices/{id}`.

use async_trait::async_trait;
use billy_aws::AwsClients;
use billy_core::ids::{Id, IdKind};
use billy_core::invoice::InvoiceStatus;
use billy_core::money::Currency;
use billy_core::ports::InvoiceFilter;
use billy_core::schedule::parse_time;
use billy_core::service::invoices::{self as service, NewItem};
use billy_core::{DomainError, DomainResult};
use billy_lambda::HttpFunction;
use billy_lambda::config::{Config, MissingVariable};
use billy_lambda::deps::Deps;
use billy_lambda::http::{
    authenticate, authenticated_write, method_not_allowed, page, parse_json, path_param, query_with, respond,
};
use billy_lambda::views;
use lambda_http::http::{Method, StatusCode};
use lambda_http::{Body, Request, Response};
use serde::Deserialize;
use serde_json::Value;

fn parse_status(raw: &str) -> DomainResult<InvoiceStatus> {
    serde_json::from_value(Value::String(raw.to_owned())).map_err(|_| {
        DomainError::invalid("parameter_invalid", format!("'{raw}' is not an invoice status"), Some("status"))
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Item {
    description: String,
    #[serde(default = "one")]
    quantity: i64,
    unit_amount: i64,
}

fn one() -> i64 {
    1
}

impl From<Item> for NewItem {
    fn from(i: Item) -> Self {
        Self { description: i.description, quantity: i.quantity, unit_amount: i.unit_amount }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateInvoice {
    customer: String,
    currency: String,
    items: Vec<Item>,
    /// A coupon, taken off the items when the invoice is finalized.
    coupon: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddItems {
    items: Vec<Item>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Action {
    Cancel,
    Refund,
    Contest,
}

/// `PATCH /v1/invoices/{id}`: `{action, amount?, reason?}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Patch {
    action: Action,
    amount: Option<i64>,
    reason: Option<String>,
}

fn reason(raw: Option<String>) -> DomainResult<Option<String>> {
    match raw.map(|r| r.trim().to_owned()) {
        Some(r) if r.chars().count() > 500 || r.chars().any(char::is_control) => Err(DomainError::invalid(
            "parameter_invalid",
            "reason must be at most 500 characters without control characters",
            Some("reason"),
        )),
        Some(r) if r.is_empty() => Ok(None),
        other => Ok(other),
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
        let s = &p;
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
        let page = page(request, IdKind::Invoice)?;
        Ok(views::list(service::list_invoices(s, &ctx, &filter, &page).await?, views::invoice))
    }
}

#[async_trait]
impl HttpFunction for App {
    async fn handle(&self, request: Request) -> Response<Body> {
        let request = &request;
        let id = path_param(request, "id");
        let path = request.uri().path();
        let (items, charge) = (path.ends_with("/items"), path.ends_with("/charge"));
        let p = self.deps.ports();
        let s = &p;
        let view = |r: DomainResult<billy_core::invoice::Invoice>| r.map(|i| views::invoice(&i));
        match (request.method(), id.is_empty()) {
            (&Method::POST, true) => {
                authenticated_write(&self.deps, request, |ctx| async move {
                    let created = async {
                        let body: CreateInvoice = parse_json(request)?;
                        let currency = Currency::parse(&body.currency, "currency")?;
                        service::create_invoice(
                            s,
                            &ctx,
                            &body.customer,
                            currency,
                            body.items.into_iter().map(NewItem::from).collect(),
                            body.coupon.as_deref(),
                        )
                        .await
                    };
                    respond(StatusCode::CREATED, view(created.await))
                })
                .await
            }
            (&Method::POST, false) if items => {
                authenticated_write(&self.deps, request, |ctx| async move {
                    let added = async {
                        let body: AddItems = parse_json(request)?;
                        service::add_invoice_items(s, &ctx, &id, body.items.into_iter().map(NewItem::from).collect())
                            .await
                    };
                    respond(StatusCode::OK, view(added.await))
                })
                .await
            }
            (&Method::POST, false) if charge => {
                authenticated_write(&self.deps, request, |ctx| async move {
                    let charged = service::charge_invoice(s, &ctx, &id).await;
                    respond(StatusCode::OK, view(charged))
                })
                .await
            }
            (&Method::PATCH, false) => {
                authenticated_write(&self.deps, request, |ctx| async move {
                    let changed = async {
                        let body: Patch = parse_json(request)?;
                        let why = reason(body.reason)?;
                        if body.amount.is_some() && !matches!(body.action, Action::Refund) {
                            return Err(DomainError::invalid(
                                "parameter_invalid",
                                "only a refund takes an amount",
                                Some("amount"),
                            ));
                        }
                        match body.action {
                            Action::Cancel => {
                                service::cancel_invoice(s, &ctx, &id, why.as_deref()).await.map(|i| views::invoice(&i))
                            }
                            Action::Contest => {
                                service::contest_invoice(s, &ctx, &id, why.as_deref()).await.map(|i| views::invoice(&i))
                            }
                            Action::Refund => {
                                if let Some(amount) = body.amount {
                                    billy_core::money::validate_amount(amount, "amount")?;
                                }
                                let (inv, refund) =
                                    service::refund_invoice(s, &ctx, &id, body.amount, why.as_deref()).await?;
                                let mut view = views::invoice(&inv);
                                view["refund"] = views::transaction(&refund);
                                Ok(view)
                            }
                        }
                    };
                    respond(StatusCode::OK, changed.await)
                })
                .await
            }
            (&Method::GET, _) => respond(StatusCode::OK, self.read(request, &id).await),
            _ => method_not_allowed(),
        }
    }
}
