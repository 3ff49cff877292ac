//! The HTTP contract in one place: JSON bodies in, `{"error": {type, code, message, param}}` out,
//! and the one mapping from domain errors to status codes.

use billy_core::audit::Context;
use billy_core::{DomainError, DomainResult};
use http::{HeaderValue, StatusCode, header};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

/// Bodies above this are refused before parsing (413).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// A response for an error. Unexpected errors are logged with their detail and answered without it.
pub fn error_response(err: &DomainError) -> Response<Body> {
    let (status, kind, code, param) = match err {
        DomainError::Invalid { code, param, .. } => {
            let status = match *code {
                "body_too_large" => StatusCode::PAYLOAD_TOO_LARGE,
                // An id used before for other content, as for a reused Idempotency-Key.
                "usage_id_reused" => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::BAD_REQUEST,
            };
            (status, "invalid_request_error", *code, param.clone())
        }
        DomainError::NotFound { .. } => (StatusCode::NOT_FOUND, "invalid_request_error", "resource_missing", None),
        DomainError::Conflict { code, .. } => (StatusCode::CONFLICT, "conflict_error", *code, None),
        DomainError::IllegalTransition { .. } => {
            (StatusCode::CONFLICT, "invalid_request_error", "illegal_transition", None)
        }
        DomainError::Unauthenticated(_) => (StatusCode::UNAUTHORIZED, "authentication_error", "invalid_api_key", None),
        DomainError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "api_error", "gateway_unavailable", None),
        DomainError::Unexpected(detail) => {
            let detail = redact_long_numbers(detail);
            tracing::error!(%detail, "unexpected error");
            return json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &json!({"error": {"type": "api_error", "code": "internal_error",
                    "message": "an internal error occurred; retry later", "param": null}}),
            );
        }
    };
    json_response(status, &json!({"error": {"type": kind, "code": code, "message": err.to_string(), "param": param}}))
}

pub fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response<Body> {
    let text = serde_json::to_string(body).unwrap_or_else(|_| "{}".to_owned());
    let mut response = Response::new(Body::Text(text));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Maps a use case's result: the value as JSON with `status`, or the error's response.
pub fn respond<T: Serialize>(status: StatusCode, result: DomainResult<T>) -> Response<Body> {
    match result {
        Ok(value) => json_response(status, &value),
        Err(err) => error_response(&err),
    }
}

fn invalid(code: &'static str, message: impl Into<String>, param: Option<&str>) -> DomainError {
    DomainError::invalid(code, message, param)
}

/// Parses a JSON body into `T` (whose `deny_unknown_fields` rejects unknown fields), naming the
/// offending field in `param`.
pub fn parse_json<T: DeserializeOwned>(request: &Request) -> DomainResult<T> {
    parse_json_up_to(request, MAX_BODY_BYTES)
}

/// `parse_json` for a route that takes larger bodies (batches), up to `limit` bytes.
pub fn parse_json_up_to<T: DeserializeOwned>(request: &Request, limit: usize) -> DomainResult<T> {
    let bytes: &[u8] = request.body().as_ref();
    if bytes.len() > limit {
        return Err(invalid("body_too_large", format!("request body is larger than {limit} bytes"), None));
    }
    if let Some(ct) = request.headers().get(header::CONTENT_TYPE) {
        let is_json = ct
            .to_str()
            .is_ok_and(|v| v.split(';').next().is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json")));
        if !is_json {
            return Err(invalid("content_type_invalid", "Content-Type must be application/json", None));
        }
    }
    let raw: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { bytes };
    let mut de = serde_json::Deserializer::from_slice(raw);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let param = (path != ".").then_some(path);
        // serde's messages quote the offending value: a card number sent as a JSON number must
        // not come back in the error (nor reach a log line).
        let message = redact_long_numbers(&inner.to_string());
        if inner.is_syntax() || inner.is_eof() {
            invalid("json_invalid", format!("malformed JSON body: {message}"), None)
        } else {
            invalid("parameter_invalid", format!("invalid body: {message}"), param.as_deref())
        }
    })?;
    de.end().map_err(|e| invalid("json_invalid", format!("malformed JSON body: {e}"), None))?;
    Ok(value)
}

/// Replaces every run of 9 or more digits (spaces and dashes between them included) with `…`: no
/// card or account number survives into a message, while ids, amounts and dates stay readable.
pub fn redact_long_numbers(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i].is_ascii_digit() {
            let mut j = i;
            let mut digits = 0;
            while j < chars.len()
                && (chars[j].is_ascii_digit()
                    || ((chars[j] == ' ' || chars[j] == '-') && j + 1 < chars.len() && chars[j + 1].is_ascii_digit()))
            {
                digits += usize::from(chars[j].is_ascii_digit());
                j += 1;
            }
            if digits >= 9 {
                out.push('…');
            } else {
                out.extend(&chars[i..j]);
            }
            i = j;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

/// The request id API Gateway (or the local runner) assigned, for the audit trail and logs.
pub fn request_id(request: &Request) -> Option<String> {
    match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.clone(),
        _ => None,
    }
}

pub fn bearer(request: &Request) -> Option<&str> {
    request.headers().get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

/// The dashboard's session cookie.
pub const SESSION_COOKIE: &str = "billy_session";

/// Authenticates the caller into a use-case context: by API key, or — for a read, where this
/// function signs sessions — by the dashboard's session cookie. A write always needs the key, so
/// a page elsewhere can never make the browser change anything.
pub async fn authenticate(deps: &crate::deps::Deps, request: &Request) -> DomainResult<Context> {
    let read = matches!(*request.method(), http::Method::GET | http::Method::HEAD);
    if bearer(request).is_none()
        && let (true, Some(signer), Some(session)) = (read, &deps.sessions, cookie(request, SESSION_COOKIE))
    {
        let now = billy_core::ports::Clock::now(&deps.clock);
        let (mut ctx, _) = billy_core::session::dashboard_session(&deps.tenants, signer, &session, now).await?;
        ctx.request_id = request_id(request);
        return Ok(ctx);
    }
    api_key_context(deps, request).await
}

/// Authenticates the caller's API key (and nothing else) into a use-case context.
pub async fn api_key_context(deps: &crate::deps::Deps, request: &Request) -> DomainResult<Context> {
    let token = bearer(request)
        .ok_or_else(|| DomainError::Unauthenticated("missing 'Authorization: Bearer <api key>' header".into()))?;
    billy_core::tenant::authenticate(&deps.tenants, token, request_id(request)).await
}

/// The scheme and host the caller reached this API at (`https://…` behind API Gateway), for
/// links that point back at it.
pub fn public_base(request: &Request) -> String {
    let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let proto = header("x-forwarded-proto").filter(|p| p == "https" || p == "http").unwrap_or_else(|| "http".into());
    let host = header("host").unwrap_or_else(|| "localhost".into());
    format!("{proto}://{host}")
}

/// The route API Gateway matched, e.g. `GET /portal/{token}` (empty when not behind it).
pub fn route_key(request: &Request) -> String {
    match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(c)) => c.route_key.clone().unwrap_or_default(),
        _ => String::new(),
    }
}

/// A cookie's value, if the request carries it.
pub fn cookie(request: &Request, name: &str) -> Option<String> {
    request
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_owned())
        .filter(|v| !v.is_empty())
}

/// The literal last segment of the route API Gateway matched (`cancel` for
/// `POST /v1/subscriptions/{id}/cancel`), or `""` when the route ends with a parameter. Taken from
/// the route, not the path, so an id that happens to read like an action (or is percent-encoded)
/// never changes which action runs.
pub fn route_action(request: &Request) -> String {
    let route = route_key(request);
    let last = route.rsplit('/').next().unwrap_or_default();
    if last.starts_with('{') { String::new() } else { last.to_owned() }
}

pub fn path_param(request: &Request, name: &str) -> String {
    request.path_parameters_ref().and_then(|p| p.first(name)).unwrap_or_default().to_owned()
}

pub fn query_param(request: &Request, name: &str) -> Option<String> {
    request.query_string_parameters_ref().and_then(|q| q.first(name)).map(str::to_owned)
}

/// Runs `handle` under the request's `Idempotency-Key` (SPEC §6): the same key and body replay the
/// saved response, a different body is 422, a concurrent duplicate 409; keys live at least 24 h.
/// The handler's context carries the key and when it was first seen, so what it creates is named
/// the same on every retry. Without the header the request simply runs.
pub async fn idempotent<F, Fut>(
    store: &dyn billy_core::ports::IdempotencyStore,
    ctx: Context,
    request: &Request,
    now: chrono::DateTime<chrono::Utc>,
    handle: F,
) -> Response<Body>
where
    F: FnOnce(Context) -> Fut,
    Fut: std::future::Future<Output = Response<Body>>,
{
    let Some(key) = request.headers().get("idempotency-key") else { return handle(ctx).await };
    let key = match key.to_str() {
        Ok(k) if !k.is_empty() && k.len() <= 255 && k.chars().all(|c| c.is_ascii_graphic()) => k.to_owned(),
        _ => {
            return error_response(&DomainError::invalid(
                "idempotency_key_invalid",
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
                None,
            ));
        }
    };
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    hasher.update(request.method().as_str().as_bytes());
    hasher.update(request.uri().path().as_bytes());
    hasher.update(request.body().as_ref());
    let hash = hex::encode(hasher.finalize());
    let idem_error = |status: StatusCode, code: &str, message: &str| {
        json_response(
            status,
            &json!({"error": {"type": "idempotency_error", "code": code, "message": message, "param": null}}),
        )
    };
    let scope = ctx.scope.clone();
    match store.begin(&scope, &key, &hash, now).await {
        Ok(billy_core::ports::IdempotencyDecision::Process { first_seen }) => {
            let seeded = Context {
                idempotency: Some(billy_core::audit::IdempotencySeed { key: key.clone(), first_seen }),
                ..ctx
            };
            let response = handle(seeded).await;
            let body = match response.body() {
                Body::Text(t) => t.clone(),
                Body::Binary(b) => String::from_utf8_lossy(b).into_owned(),
                _ => String::new(),
            };
            // A server error is not a result: release the key so a retry runs again (and finds
            // what the first run committed, named from the same key).
            let saved = if response.status().is_server_error() {
                store.abandon(&scope, &key).await
            } else {
                store.complete(&scope, &key, response.status().as_u16(), &replayable(&body)).await
            };
            if let Err(e) = saved {
                tracing::error!(error = %e, "idempotency record not saved");
            }
            response
        }
        Ok(billy_core::ports::IdempotencyDecision::Replay { status, body }) => {
            let mut response = Response::new(Body::Text(body));
            *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
            response
        }
        Ok(billy_core::ports::IdempotencyDecision::InFlight) => idem_error(
            StatusCode::CONFLICT,
            "idempotency_key_in_use",
            "a request with this Idempotency-Key is still being processed",
        ),
        Ok(billy_core::ports::IdempotencyDecision::Mismatch) => idem_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request",
        ),
        Err(e) => error_response(&e),
    }
}

/// What is saved for a replay: the answer without a `secret` (a webhook endpoint's signing secret
/// is shown once, and is never stored in clear, not even as a saved answer; a replay shows
/// `"secret": null`, and rotating the secret gives a new one), and without a portal session's
/// link (a credential for the customer's page until it expires).
fn replayable(body: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(mut v) if v.get("secret").is_some_and(serde_json::Value::is_string) => {
            v["secret"] = serde_json::Value::Null;
            v.to_string()
        }
        // A portal link is a credential for a customer's page: a replay answers without it.
        Ok(mut v) if v.get("object").and_then(serde_json::Value::as_str) == Some("portal_session") => {
            v["url"] = serde_json::Value::Null;
            v.to_string()
        }
        _ => body.to_owned(),
    }
}

/// Authenticates, then runs a state-changing request under its Idempotency-Key.
pub async fn authenticated_write<F, Fut>(deps: &crate::deps::Deps, request: &Request, handle: F) -> Response<Body>
where
    F: FnOnce(billy_core::audit::Context) -> Fut,
    Fut: std::future::Future<Output = Response<Body>>,
{
    // A write needs the API key: a session cookie is never enough to change anything.
    let ctx = match api_key_context(deps, request).await {
        Ok(ctx) => ctx,
        Err(e) => return error_response(&e),
    };
    let now = billy_core::ports::Clock::now(&deps.clock);
    idempotent(&deps.idempotency, ctx, request, now, handle).await
}

/// The `limit` and `starting_after` of a list request for objects of `kind`.
pub fn page(request: &Request, kind: billy_core::ids::IdKind) -> DomainResult<billy_core::page::PageRequest> {
    billy_core::page::PageRequest::parse(
        query_param(request, "limit").as_deref(),
        query_param(request, "starting_after").as_deref(),
        kind,
    )
}

/// Optional query parameters parsed with `parse`, naming the parameter on error.
pub fn query_with<T>(
    request: &Request,
    name: &str,
    parse: impl FnOnce(&str) -> DomainResult<T>,
) -> DomainResult<Option<T>> {
    query_param(request, name).map(|raw| parse(&raw)).transpose()
}

/// The response for a route that exists but not with this method (API Gateway itself answers 404
/// for unknown routes; a function serving several methods answers this).
pub fn method_not_allowed() -> Response<Body> {
    json_response(
        StatusCode::METHOD_NOT_ALLOWED,
        &json!({"error": {"type": "invalid_request_error", "code": "method_not_allowed",
            "message": "method not allowed on this route", "param": null}}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_in_an_answer_is_never_saved_for_replay() {
        let saved = replayable(r#"{"id":"we_1","secret":"whsec_abc","url":"https://x"}"#);
        assert!(!saved.contains("whsec_abc") && saved.contains("\"secret\":null") && saved.contains("we_1"));
        assert_eq!(replayable(r#"{"id":"cus_1"}"#), r#"{"id":"cus_1"}"#);
        let link = replayable(r#"{"id":"bps_1","object":"portal_session","url":"https://x/portal/tok.mac"}"#);
        assert!(!link.contains("tok.mac") && link.contains("\"url\":null"));
    }

    #[test]
    fn long_digit_runs_are_redacted_and_short_ones_kept() {
        assert_eq!(
            redact_long_numbers("invalid type: integer `4242424242424242`, expected a string at line 1 column 30"),
            "invalid type: integer `…`, expected a string at line 1 column 30"
        );
        assert_eq!(redact_long_numbers("card 4242 4242 4242 4242 and 000123456789"), "card … and …");
        assert_eq!(redact_long_numbers("2026-01-31 amount 1999 of 12345678"), "2026-01-31 amount 1999 of 12345678");
    }
}
