//! Payment methods and payout destinations, kept only as gateway tokens and a redacted view (never
//! a card or account number, PCI DSS 3.4), and which method a charge uses. A payout destination
//! (a bank account or pix key, id `pd_…`) is a `PaymentMethod` stored apart, with its own default.

use crate::error::{DomainError, DomainResult};
use crate::ids::Id;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MethodType {
    Card,
    BankAccount,
    Pix,
}

impl MethodType {
    pub const ALL: [Self; 3] = [Self::Card, Self::BankAccount, Self::Pix];

    pub fn parse(raw: &str, param: &str) -> DomainResult<Self> {
        match raw {
            "card" => Ok(Self::Card),
            "bank_account" => Ok(Self::BankAccount),
            "pix" => Ok(Self::Pix),
            _ => Err(DomainError::invalid("type_invalid", "type must be one of card, bank_account, pix", Some(param))),
        }
    }

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Card => "card",
            Self::BankAccount => "bank_account",
            Self::Pix => "pix",
        }
    }
}

/// A full card number, bank account number or pix key as a client sent it (test mode only). It
/// cannot be serialised, and its `Debug` shows only the last four characters, so it can reach
/// neither storage nor a log line by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct SensitiveNumber(String);

impl fmt::Debug for SensitiveNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SensitiveNumber(…{})", self.last4())
    }
}

impl SensitiveNumber {
    /// Checks and normalises what a client gave for a method of `kind`: a card number must be 12
    /// to 19 digits and pass the Luhn check, an account number 6 to 34 letters or digits, a pix key
    /// 1 to 77 characters without spaces.
    pub fn parse(kind: MethodType, raw: &str) -> DomainResult<Self> {
        match kind {
            MethodType::Card => {
                let digits: String = raw.chars().filter(|c| !c.is_whitespace() && *c != '-').collect();
                if !(12..=19).contains(&digits.len()) || !digits.chars().all(|c| c.is_ascii_digit()) || !luhn(&digits) {
                    return Err(DomainError::invalid(
                        "card_number_invalid",
                        "the card number is not valid",
                        Some("card.number"),
                    ));
                }
                Ok(Self(digits))
            }
            MethodType::BankAccount => {
                let n = raw.trim();
                if !(6..=34).contains(&n.len()) || !n.chars().all(|c| c.is_ascii_alphanumeric()) {
                    return Err(DomainError::invalid(
                        "account_number_invalid",
                        "account number must be 6 to 34 letters or digits",
                        Some("bank_account.account_number"),
                    ));
                }
                Ok(Self(n.to_owned()))
            }
            MethodType::Pix => {
                let k = raw.trim();
                if k.is_empty() || k.chars().count() > 77 || k.chars().any(char::is_whitespace) {
                    return Err(DomainError::invalid(
                        "pix_key_invalid",
                        "pix key must be 1 to 77 characters without spaces",
                        Some("pix.key"),
                    ));
                }
                Ok(Self(k.to_owned()))
            }
        }
    }

    /// The number itself, for the one call that exchanges it for a token.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn last4(&self) -> String {
        let chars: Vec<char> = self.0.chars().collect();
        chars[chars.len().saturating_sub(4)..].iter().collect()
    }
}

fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 { if d * 2 > 9 { d * 2 - 9 } else { d * 2 } } else { d }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// A gateway's token for a payment method (its vault id): what charges are made against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayToken {
    pub gateway: String,
    pub token: String,
    /// The gateway's own customer the token belongs to, where it has one (Stripe's `cus_…`,
    /// Adyen's `shopperReference`): charges made off session name it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer: Option<String>,
}

/// What may be shown of a method: never the number itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MethodDetails {
    /// Card brand (`visa`, ...) or bank name, when the gateway says.
    #[serde(default)]
    pub brand: Option<String>,
    pub last4: String,
    #[serde(default)]
    pub exp_month: Option<u8>,
    #[serde(default)]
    pub exp_year: Option<u16>,
    /// The gateway's fingerprint of the number: the same card gives the same fingerprint, so
    /// duplicates can be spotted without the number.
    #[serde(default)]
    pub fingerprint: Option<String>,
}

/// What a gateway answers when it vaults a number: its token and the redacted view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vaulted {
    pub token: String,
    pub details: MethodDetails,
}

/// A method as a client registers it, before validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewMethod {
    /// Tokens made by the gateways themselves (Stripe.js, Adyen's drop-in): one per gateway that
    /// vaulted the method. `details` is what the client knows of it (last four digits, brand).
    Tokens { kind: MethodType, tokens: Vec<GatewayToken>, details: MethodDetails },
    /// A sandbox test number, exchanged at once for a sandbox token (test mode only).
    TestNumber { kind: MethodType, number: SensitiveNumber },
}

impl NewMethod {
    pub fn kind(&self) -> MethodType {
        match self {
            Self::Tokens { kind, .. } | Self::TestNumber { kind, .. } => *kind,
        }
    }
}

/// Checks client-given tokens: 1 to 5, one per gateway, each a short printable string.
pub fn validate_tokens(tokens: &[GatewayToken]) -> DomainResult<()> {
    let bad = |m: &str| Err(DomainError::invalid("token_invalid", m.to_owned(), Some("tokens")));
    if tokens.is_empty() || tokens.len() > 5 {
        return bad("give 1 to 5 gateway tokens");
    }
    for (i, t) in tokens.iter().enumerate() {
        let printable = |s: &str| !s.is_empty() && s.len() <= 255 && s.chars().all(|c| c.is_ascii_graphic());
        if !printable(&t.gateway) || !printable(&t.token) {
            return bad("gateway and token must be 1 to 255 visible ASCII characters");
        }
        if tokens[..i].iter().any(|o| o.gateway == t.gateway) {
            return bad("one token per gateway");
        }
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentMethod {
    pub id: Id,
    pub customer: Id,
    #[serde(rename = "type")]
    pub kind: MethodType,
    /// One token per gateway that vaulted this method; failover only ever goes to one of these.
    pub tokens: Vec<GatewayToken>,
    pub details: MethodDetails,
    pub created: DateTime<Utc>,
    pub livemode: bool,
}

impl PaymentMethod {
    /// The token a gateway holds for this method, if it holds one.
    pub fn token_for(&self, gateway: &str) -> Option<&str> {
        self.tokens.iter().find(|t| t.gateway == gateway).map(|t| t.token.as_str())
    }

    pub fn gateways(&self) -> impl Iterator<Item = &str> {
        self.tokens.iter().map(|t| t.gateway.as_str())
    }
}

/// Payouts go to bank accounts and pix keys, never to cards.
pub fn check_payout_kind(kind: MethodType) -> DomainResult<()> {
    if kind == MethodType::Card {
        return Err(DomainError::invalid(
            "destination_invalid",
            "payouts go to a bank account or a pix key",
            Some("type"),
        ));
    }
    Ok(())
}

/// Where a payout goes: the customer's default payout destination, else an error the invoice
/// records.
pub fn destination_for_payout(customer_default: Option<&Id>) -> DomainResult<Id> {
    customer_default.cloned().ok_or_else(|| {
        DomainError::invalid(
            "no_payout_destination",
            "the customer has no default payout destination",
            Some("payout_destination"),
        )
    })
}

/// The method a charge uses: the subscription's own, else the customer's default, else an error
/// the invoice records.
pub fn method_for_charge(subscription_method: Option<&Id>, customer_default: Option<&Id>) -> DomainResult<Id> {
    subscription_method.or(customer_default).cloned().ok_or_else(|| {
        DomainError::invalid(
            "no_payment_method",
            "the customer has no default payment method and the subscription names none",
            Some("payment_method"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_test_cards_pass_luhn_and_typos_do_not() {
        for n in ["4242424242424242", "4000000000000002", "4000000000009995", "4000000000000119", "4000000000000259"] {
            assert!(SensitiveNumber::parse(MethodType::Card, n).is_ok(), "{n}");
        }
        assert!(SensitiveNumber::parse(MethodType::Card, "4242424242424241").is_err());
        assert!(SensitiveNumber::parse(MethodType::Card, "4242").is_err());
        let spaced = SensitiveNumber::parse(MethodType::Card, "4242 4242 4242 4242").unwrap();
        assert_eq!((spaced.expose(), spaced.last4().as_str()), ("4242424242424242", "4242"));
        assert!(SensitiveNumber::parse(MethodType::BankAccount, "000123456789").is_ok());
        assert!(SensitiveNumber::parse(MethodType::BankAccount, "12 34").is_err());
        assert!(SensitiveNumber::parse(MethodType::Pix, "pix-ok@example.com").is_ok());
        assert!(SensitiveNumber::parse(MethodType::Pix, "a b").is_err());
    }

    #[test]
    fn a_sensitive_number_never_shows_more_than_its_last_four_in_debug() {
        let n = SensitiveNumber::parse(MethodType::Card, "4242424242424242").unwrap();
        let shown = format!("{n:?} {:?}", NewMethod::TestNumber { kind: MethodType::Card, number: n.clone() });
        assert!(!shown.contains("424242424242"), "{shown}");
        assert!(shown.contains("4242"));
    }

    #[test]
    fn tokens_are_one_per_gateway_and_bounded() {
        let t = |g: &str| GatewayToken { gateway: g.into(), token: "pm_1".into(), customer: None };
        assert!(validate_tokens(&[t("stripe"), t("adyen")]).is_ok());
        assert!(validate_tokens(&[]).is_err());
        assert!(validate_tokens(&[t("stripe"), t("stripe")]).is_err());
        assert!(
            validate_tokens(&[GatewayToken { gateway: "stripe".into(), token: "has space".into(), customer: None }])
                .is_err()
        );
    }

    #[test]
    fn the_subscription_method_wins_then_the_default_then_an_error() {
        let (sub, def) = (Id::from_trusted("pm_sub".into()), Id::from_trusted("pm_def".into()));
        assert_eq!(method_for_charge(Some(&sub), Some(&def)).unwrap(), sub);
        assert_eq!(method_for_charge(None, Some(&def)).unwrap(), def);
        assert!(matches!(method_for_charge(None, None), Err(DomainError::Invalid { code: "no_payment_method", .. })));
    }

    #[test]
    fn payouts_never_go_to_a_card() {
        assert!(check_payout_kind(MethodType::Card).is_err());
        assert!(check_payout_kind(MethodType::Pix).is_ok());
        assert!(check_payout_kind(MethodType::BankAccount).is_ok());
    }
}
