//! The operator dashboard and the customer portal, served by Billy itself. Pages: `GET /dashboard`
//! and `GET /portal` (one bundle, embedded at build time, under `/dashboard/assets/{file}`).
//! Signing in (`POST /dashboard/session`) exchanges an API key for an hour-long signed session in
//! an HttpOnly cookie, with which the page reads the API (reads only); `DELETE` signs out. A
//! portal link (`GET /portal/{token}`, made by `POST /v1/customers/{id}/portal_sessions`) starts a
//! portal session for its one customer, whose page reads `GET /portal/api/{customer,summary,invoices}`:
//! the customer always comes from the signed session, never from the request.

use async_trait::async_trait;
use billy_aws::AwsClients;
use billy_aws::kms::KmsSessionSigner;
use billy_core::audit::{Actor, Context};
use billy_core::ids::IdKind;
use billy_core::ports::{Clock, InvoiceFilter};
use billy_core::session::{self, DASHBOARD_SESSION, PORTAL_SESSION};
use billy_core::{DomainError, DomainResult, service};
use billy_lambda::HttpFunction;
use billy_lambda::config::{Config, MissingVariable};
use billy_lambda::deps::Deps;
use billy_lambda::http::{
    SESSION_COOKIE, cookie, error_response, json_response, page, parse_json, path_param, query_param, request_id,
    respond, route_key,
};
use billy_lambda::views;
use lambda_http::http::{HeaderValue, StatusCode, header};
use lambda_http::{Body, Request, Response};
use serde::Deserialize;
use serde_json::{Value, json};

const INDEX: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/dist/index.html"));
const APP_JS: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/dist/app.js"));
const APP_CSS: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/dist/app.css"));

/// The portal's session cookie: sent only to `/portal` paths.
pub const PORTAL_COOKIE: &str = "billy_portal";

/// Nothing but Billy's own origin; no framing; no referrer (a portal link is a credential).
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    api_key: String,
}

#[derive(Debug)]
pub struct App {
    deps: Deps,
    signer: KmsSessionSigner,
}

impl App {
    pub fn new(config: &Config, aws: &AwsClients) -> Result<Self, MissingVariable> {
        config.require("BILLY_SESSION_KEY")?;
        let deps = Deps::new(config, aws)?;
        let signer = deps.sessions.clone().ok_or_else(|| MissingVariable("BILLY_SESSION_KEY".into()))?;
        Ok(Self { deps, signer })
    }

    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.deps.clock.now()
    }

    async fn portal(&self, request: &Request) -> DomainResult<Value> {
        let token = cookie(request, PORTAL_COOKIE)
            .ok_or_else(|| DomainError::Unauthenticated("open the page from a portal link".into()))?;
        let (scope, customer) = session::portal_customer(&self.signer, &token, self.now()).await?;
        let ctx = Context::new(scope, Actor::System { function: "portal".into() }, request_id(request));
        let p = self.deps.ports();
        match path_param(request, "resource").as_str() {
            "customer" => {
                let c = service::customers::get_customer(&p, &ctx, customer.as_str()).await?;
                Ok(json!({"id": c.id, "object": "customer", "name": c.name, "email": c.email,
                    "livemode": ctx.scope.mode == billy_core::tenant::Mode::Live}))
            }
            "summary" => {
                let month = query_param(request, "month");
                let summary =
                    service::customers::customer_summary(&p, &ctx, customer.as_str(), month.as_deref()).await?;
                Ok(views::customer_summary(customer.as_str(), &summary))
            }
            "invoices" => {
                let filter = InvoiceFilter { customer: Some(customer), ..InvoiceFilter::default() };
                let page = page(request, IdKind::Invoice)?;
                Ok(views::list(service::invoices::list_invoices(&p, &ctx, &filter, &page).await?, portal_invoice))
            }
            other => Err(DomainError::not_found("portal resource", other)),
        }
    }
}

/// What a customer sees of an invoice: its figures and lines, not the tenant's notes about it
/// (adjustment reasons, failure reasons, attempts, settlements).
fn portal_invoice(i: &billy_core::invoice::Invoice) -> Value {
    let items: Vec<Value> = i
        .items
        .iter()
        .map(|l| json!({"description": l.description, "quantity": l.quantity, "unit_amount": l.unit_amount, "amount": l.amount}))
        .collect();
    json!({
        "id": i.id, "object": "invoice", "customer": i.customer, "status": i.status.as_str(), "currency": i.currency, "total": i.total,
        "amount_paid": i.amount_paid, "amount_refunded": i.amount_refunded, "created": i.created, "paid_at": i.paid_at,
        "period_start": i.period.as_ref().map(|p| p.start), "period_end": i.period.as_ref().map(|p| p.end),
        "items": items,
    })
}

fn secure(request: &Request) -> &'static str {
    let https = request.headers().get("x-forwarded-proto").is_some_and(|p| p.as_bytes() == b"https");
    if https { "; Secure" } else { "" }
}

fn set_cookie(mut response: Response<Body>, value: &str) -> Response<Body> {
    if let Ok(v) = HeaderValue::from_str(value) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

fn with_headers(mut response: Response<Body>, content_type: &'static str, cache: &'static str) -> Response<Body> {
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

fn text(status: StatusCode, body: &str, content_type: &'static str, cache: &'static str) -> Response<Body> {
    let mut response = Response::new(Body::Text(body.to_owned()));
    *response.status_mut() = status;
    with_headers(response, content_type, cache)
}

fn no_store(response: Response<Body>) -> Response<Body> {
    let mut response = response;
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

const REFUSED_PAGE: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Link not valid</title>\
<link rel=\"stylesheet\" href=\"/dashboard/assets/app.css\"></head><body><main class=\"refused\">\
<h1>This link has expired or is not valid</h1><p>Ask for a new link to your billing page.</p></main></body></html>";

#[async_trait]
impl HttpFunction for App {
    async fn handle(&self, request: Request) -> Response<Body> {
        let request = &request;
        let html = "text/html; charset=utf-8";
        match route_key(request).as_str() {
            "GET /dashboard" | "GET /portal" => text(StatusCode::OK, INDEX, html, "no-store"),
            "GET /dashboard/assets/{file}" => match path_param(request, "file").as_str() {
                "app.js" => text(StatusCode::OK, APP_JS, "text/javascript; charset=utf-8", "no-cache"),
                "app.css" => text(StatusCode::OK, APP_CSS, "text/css; charset=utf-8", "no-cache"),
                _ => text(StatusCode::NOT_FOUND, "not found", "text/plain; charset=utf-8", "no-store"),
            },
            "POST /dashboard/session" => {
                let signed = async {
                    let body: SignIn = parse_json(request)?;
                    session::sign_in(&self.deps.tenants, &self.signer, &self.deps.ids, &body.api_key, self.now()).await
                };
                match signed.await {
                    Ok((token, view)) => {
                        let cookie = format!(
                            "{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}{}",
                            DASHBOARD_SESSION.num_seconds(),
                            secure(request)
                        );
                        no_store(set_cookie(json_response(StatusCode::OK, &view), &cookie))
                    }
                    Err(e) => no_store(error_response(&e)),
                }
            }
            "GET /dashboard/session" => {
                let current = async {
                    let token = cookie(request, SESSION_COOKIE)
                        .ok_or_else(|| DomainError::Unauthenticated("not signed in".into()))?;
                    session::dashboard_session(&self.deps.tenants, &self.signer, &token, self.now()).await
                };
                no_store(respond(StatusCode::OK, current.await.map(|(_, view)| view)))
            }
            "DELETE /dashboard/session" => {
                let mut response = Response::new(Body::Empty);
                *response.status_mut() = StatusCode::NO_CONTENT;
                let cookie =
                    format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0{}", secure(request));
                no_store(set_cookie(response, &cookie))
            }
            "GET /portal/{token}" => {
                let link = path_param(request, "token");
                match session::follow_portal_link(&self.signer, &link, self.now()).await {
                    Ok(token) => {
                        let mut response = text(StatusCode::SEE_OTHER, "", html, "no-store");
                        response.headers_mut().insert(header::LOCATION, HeaderValue::from_static("/portal"));
                        let cookie = format!(
                            "{PORTAL_COOKIE}={token}; HttpOnly; SameSite=Lax; Path=/portal; Max-Age={}{}",
                            PORTAL_SESSION.num_seconds(),
                            secure(request)
                        );
                        set_cookie(response, &cookie)
                    }
                    Err(DomainError::Unauthenticated(_)) => text(StatusCode::FORBIDDEN, REFUSED_PAGE, html, "no-store"),
                    Err(e) => error_response(&e),
                }
            }
            "GET /portal/api/{resource}" => no_store(respond(StatusCode::OK, self.portal(request).await)),
            _ => billy_lambda::http::method_not_allowed(),
        }
    }
}
