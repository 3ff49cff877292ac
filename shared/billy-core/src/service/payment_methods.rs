//! Payment methods: register (gateway tokens, or a sandbox test number exchanged at once for a
//! sandbox token in test mode), list, choose the default. Billy keeps tokens and a redacted view
//! only: no card or account number is ever stored, journaled or returned.

use super::create_once;
use crate::audit::Context;
use crate::customer::Customer;
use crate::error::{DomainError, DomainResult};
use crate::gateway::GatewayError;
use crate::ids::{Id, IdKind};
use crate::payment_method::{GatewayToken, MethodDetails, NewMethod, PaymentMethod, validate_tokens};
use crate::ports::{Ports, Write};

/// The deployment's test gateway: it exchanges test numbers for tokens, in test mode only.
pub const SANDBOX: &str = "sandbox";

fn unreachable_gateway(gateway: &str, e: &GatewayError) -> DomainError {
    DomainError::Unavailable(format!("gateway {gateway} could not be asked about the method ({e}); retry later"))
}

/// Turns what the client gave into gateway tokens and the redacted view.
async fn vault(p: &Ports<'_>, ctx: &Context, input: NewMethod) -> DomainResult<(Vec<GatewayToken>, MethodDetails)> {
    let live = ctx.scope.livemode();
    let mut registry = p.gateways.for_scope(&ctx.scope).await?;
    // A gateway named here and unknown to this instance may have been connected a moment ago.
    if let NewMethod::Tokens { tokens, .. } = &input
        && tokens.iter().any(|t| registry.get(&t.gateway).is_none())
    {
        p.gateways.forget(&ctx.scope);
        registry = p.gateways.for_scope(&ctx.scope).await?;
    }
    match input {
        NewMethod::TestNumber { kind, number } => {
            if live {
                return Err(DomainError::invalid(
                    "raw_number_live_mode",
                    "live mode takes gateway tokens only: tokenise the number on the client (Stripe.js, Adyen's drop-in) and register {\"gateway\", \"token\"}",
                    Some("number"),
                ));
            }
            let sandbox = registry.get(SANDBOX).ok_or_else(|| {
                DomainError::invalid(
                    "sandbox_unavailable",
                    "this deployment has no sandbox gateway to exchange test numbers; register a gateway token",
                    Some("number"),
                )
            })?;
            let vaulted = sandbox.vault(kind, &number).await.map_err(|e| unreachable_gateway(SANDBOX, &e))?;
            Ok((
                vec![GatewayToken { gateway: SANDBOX.to_owned(), token: vaulted.token, customer: None }],
                vaulted.details,
            ))
        }
        NewMethod::Tokens { kind, tokens, details } => {
            validate_tokens(&tokens)?;
            let mut described = None;
            for t in &tokens {
                if live && t.gateway == SANDBOX {
                    return Err(DomainError::invalid(
                        "sandbox_live_mode",
                        "sandbox tokens are for test mode only",
                        Some("tokens.gateway"),
                    ));
                }
                let gateway = registry.get(&t.gateway).ok_or_else(|| {
                    DomainError::invalid(
                        "gateway_unknown",
                        format!("unknown gateway '{}'", t.gateway),
                        Some("tokens.gateway"),
                    )
                })?;
                if !gateway.supports(kind) {
                    return Err(DomainError::invalid(
                        "method_unsupported",
                        format!("gateway '{}' does not take {} methods", t.gateway, kind.as_str()),
                        Some("type"),
                    ));
                }
                // Every token must be one its gateway issued; the first gateway's view is kept.
                let found = match gateway.describe(kind, &t.token, t.customer.as_deref()).await {
                    Ok(found) => found,
                    Err(GatewayError::NotSent(why)) => {
                        return Err(DomainError::invalid("token_unverifiable", why, Some("tokens")));
                    }
                    Err(e) => return Err(unreachable_gateway(&t.gateway, &e)),
                };
                let found = found.ok_or_else(|| {
                    DomainError::invalid(
                        "token_invalid",
                        format!("gateway '{}' does not know this token", t.gateway),
                        Some("tokens.token"),
                    )
                })?;
                described.get_or_insert(found);
            }
            let mut view = described.unwrap_or(details.clone());
            if view.last4.is_empty() {
                view.last4 = details.last4;
            }
            Ok((tokens, view))
        }
    }
}

/// Registers a payment method; the customer's first becomes its default.
pub async fn add_payment_method(
    p: &Ports<'_>,
    ctx: &Context,
    customer: &str,
    input: NewMethod,
) -> DomainResult<PaymentMethod> {
    let mut customer = super::customer(p, ctx, customer, "").await?;
    let kind = input.kind();
    let (tokens, details) = vault(p, ctx, input).await?;
    let now = p.clock.now();
    let method = PaymentMethod {
        id: ctx.new_id(p.ids, IdKind::PaymentMethod),
        customer: customer.id.clone(),
        kind,
        tokens,
        details,
        created: now,
        livemode: ctx.scope.livemode(),
    };
    let mut events = vec![ctx.snapshot(p.ids, now, "payment_method.created", &method)];
    let mut writes = vec![Write::PaymentMethod { method: method.clone() }];
    if customer.default_payment_method.is_none() {
        let expected = customer.version;
        customer.default_payment_method = Some(method.id.clone());
        customer.version += 1;
        events.push(ctx.snapshot(p.ids, now, "customer.default_payment_method_set", &customer));
        writes.push(Write::Customer { customer, expected: Some(expected) });
    }
    let id = method.id.clone();
    create_once(p, ctx, method, writes, events, || p.methods.get(&ctx.scope, &id)).await
}

pub async fn set_default_payment_method(
    p: &Ports<'_>,
    ctx: &Context,
    customer: &str,
    method: &str,
) -> DomainResult<Customer> {
    let mut customer = super::customer(p, ctx, customer, "").await?;
    let id = Id::parse(IdKind::PaymentMethod, method, "")?;
    let method = p
        .methods
        .get(&ctx.scope, &id)
        .await?
        .filter(|m| m.customer == customer.id)
        .ok_or_else(|| DomainError::not_found("payment_method", method))?;
    if customer.default_payment_method.as_ref() == Some(&method.id) {
        return Ok(customer);
    }
    let expected = customer.version;
    customer.default_payment_method = Some(method.id);
    customer.version += 1;
    let event = ctx.snapshot(p.ids, p.clock.now(), "customer.default_payment_method_set", &customer);
    p.unit
        .commit(&ctx.scope, vec![Write::Customer { customer: customer.clone(), expected: Some(expected) }], vec![event])
        .await?;
    Ok(customer)
}

pub async fn list_payment_methods(p: &Ports<'_>, ctx: &Context, customer: &str) -> DomainResult<Vec<PaymentMethod>> {
    let customer = super::customer(p, ctx, customer, "").await?;
    let mut methods = p.methods.for_customer(&ctx.scope, &customer.id).await?;
    methods.sort_by(|a, b| b.id.cmp(&a.id));
    Ok(methods)
}
