//! Payment methods and payout destinations: register (gateway tokens, or a sandbox test number exchanged at once for a
//! sandbox token in test mode), list, choose the default. Billy keeps tokens and a redacted view
//! only: no card or account number is ever stored, journaled or returned.

use super::create_once;
use crate::audit::Context;
use crate::customer::Customer;
use crate::error::{DomainError, DomainResult};
use crate::gateway::GatewayError;
use crate::ids::{Id, IdKind};
use crate::payment_method::{
    GatewayToken, MethodDetails, NewMethod, PaymentMethod, check_payout_kind, validate_tokens,
};
use crate::ports::{PaymentMethodRepository, Ports, Write};

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

/// The two kinds of tokenised instrument a customer has: what they pay with, and where they are
/// paid. Both are vaulted, masked and stored alike; each has its own list and its own default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Instrument {
    PaymentMethod,
    PayoutDestination,
}

impl Instrument {
    const fn id_kind(self) -> IdKind {
        match self {
            Self::PaymentMethod => IdKind::PaymentMethod,
            Self::PayoutDestination => IdKind::PayoutDestination,
        }
    }

    const fn entity(self) -> &'static str {
        match self {
            Self::PaymentMethod => "payment_method",
            Self::PayoutDestination => "payout_destination",
        }
    }

    fn repository<'a>(self, p: &Ports<'a>) -> &'a dyn PaymentMethodRepository {
        match self {
            Self::PaymentMethod => p.methods,
            Self::PayoutDestination => p.destinations,
        }
    }

    fn write(self, method: PaymentMethod) -> Write {
        match self {
            Self::PaymentMethod => Write::PaymentMethod { method },
            Self::PayoutDestination => Write::PayoutDestination { destination: method },
        }
    }

    fn default_of(self, customer: &mut Customer) -> &mut Option<Id> {
        match self {
            Self::PaymentMethod => &mut customer.default_payment_method,
            Self::PayoutDestination => &mut customer.default_payout_destination,
        }
    }

    const fn created(self) -> &'static str {
        match self {
            Self::PaymentMethod => "payment_method.created",
            Self::PayoutDestination => "payout_destination.created",
        }
    }

    const fn default_set(self) -> &'static str {
        match self {
            Self::PaymentMethod => "customer.default_payment_method_set",
            Self::PayoutDestination => "customer.default_payout_destination_set",
        }
    }
}

/// Registers a payment method or a payout destination (a bank account or pix key, never a card);
/// the customer's first of its kind becomes its default.
pub async fn add_instrument(
    p: &Ports<'_>,
    ctx: &Context,
    instrument: Instrument,
    customer: &str,
    input: NewMethod,
) -> DomainResult<PaymentMethod> {
    let kind = input.kind();
    if instrument == Instrument::PayoutDestination {
        check_payout_kind(kind)?;
    }
    let mut customer = super::customer(p, ctx, customer, "").await?;
    let (tokens, details) = vault(p, ctx, input).await?;
    let now = p.clock.now();
    let method = PaymentMethod {
        id: ctx.new_id(p.ids, instrument.id_kind()),
        customer: customer.id.clone(),
        kind,
        tokens,
        details,
        created: now,
        livemode: ctx.scope.livemode(),
    };
    let mut events = vec![ctx.snapshot(p.ids, now, instrument.created(), &method)];
    let mut writes = vec![instrument.write(method.clone())];
    if instrument.default_of(&mut customer).is_none() {
        let expected = customer.version;
        *instrument.default_of(&mut customer) = Some(method.id.clone());
        customer.version += 1;
        events.push(ctx.snapshot(p.ids, now, instrument.default_set(), &customer));
        writes.push(Write::Customer { customer, expected: Some(expected) });
    }
    let id = method.id.clone();
    create_once(p, ctx, method, writes, events, || instrument.repository(p).get(&ctx.scope, &id)).await
}

/// Registers a payment method; the customer's first becomes its default.
pub async fn add_payment_method(
    p: &Ports<'_>,
    ctx: &Context,
    customer: &str,
    input: NewMethod,
) -> DomainResult<PaymentMethod> {
    add_instrument(p, ctx, Instrument::PaymentMethod, customer, input).await
}

/// Makes one of the customer's own instruments its default of that kind.
pub async fn set_default(
    p: &Ports<'_>,
    ctx: &Context,
    instrument: Instrument,
    customer: &str,
    method: &str,
) -> DomainResult<Customer> {
    let mut customer = super::customer(p, ctx, customer, "").await?;
    let id = Id::parse(instrument.id_kind(), method, "")?;
    let method = instrument
        .repository(p)
        .get(&ctx.scope, &id)
        .await?
        .filter(|m| m.customer == customer.id)
        .ok_or_else(|| DomainError::not_found(instrument.entity(), method))?;
    if instrument.default_of(&mut customer).as_ref() == Some(&method.id) {
        return Ok(customer);
    }
    let expected = customer.version;
    *instrument.default_of(&mut customer) = Some(method.id);
    customer.version += 1;
    let event = ctx.snapshot(p.ids, p.clock.now(), instrument.default_set(), &customer);
    p.unit
        .commit(&ctx.scope, vec![Write::Customer { customer: customer.clone(), expected: Some(expected) }], vec![event])
        .await?;
    Ok(customer)
}

/// The customer's instruments of one kind, newest first.
pub async fn list(
    p: &Ports<'_>,
    ctx: &Context,
    instrument: Instrument,
    customer: &str,
) -> DomainResult<Vec<PaymentMethod>> {
    let customer = super::customer(p, ctx, customer, "").await?;
    let mut methods = instrument.repository(p).for_customer(&ctx.scope, &customer.id).await?;
    methods.sort_by(|a, b| b.id.cmp(&a.id));
    Ok(methods)
}
