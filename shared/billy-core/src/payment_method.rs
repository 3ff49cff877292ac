//! Payment methods (card token, bank account, pix key) and payout destinations; which method a
//! charge uses; and gateway routing rules, which are data, not code.

use crate::error::{DomainError, DomainResult};
use crate::ids::Id;
use crate::money::Currency;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MethodType {
    Card,
    BankAccount,
    Pix,
}

impl MethodType {
    pub fn parse(raw: &str, param: &str) -> DomainResult<Self> {
        match raw {
            "card" => Ok(Self::Card),
            "bank_account" => Ok(Self::BankAccount),
            "pix" => Ok(Self::Pix),
            _ => Err(DomainError::invalid("type_invalid", "type must be one of card, bank_account, pix", Some(param))),
        }
    }
}

/// The instrument itself. Card numbers are tokenised by the gateway; Billy keeps the token (the
/// sandbox's test numbers act as their own tokens) and the last four digits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Instrument {
    Card { token: String, last4: String },
    BankAccount { account_number: String, last4: String },
    Pix { key: String },
}

impl Instrument {
    pub fn method_type(&self) -> MethodType {
        match self {
            Self::Card { .. } => MethodType::Card,
            Self::BankAccount { .. } => MethodType::BankAccount,
            Self::Pix { .. } => MethodType::Pix,
        }
    }

    /// A card given by number (sandbox test numbers) must pass the Luhn check.
    pub fn card(number: &str) -> DomainResult<Self> {
        let digits: String = number.chars().filter(|c| !c.is_whitespace() && *c != '-').collect();
        if !(12..=19).contains(&digits.len()) || !digits.chars().all(|c| c.is_ascii_digit()) || !luhn(&digits) {
            return Err(DomainError::invalid(
                "card_number_invalid",
                "the card number is not valid",
                Some("card.number"),
            ));
        }
        Ok(Self::Card { last4: digits[digits.len() - 4..].to_owned(), token: digits })
    }

    pub fn bank_account(number: &str) -> DomainResult<Self> {
        let n = number.trim();
        if !(6..=34).contains(&n.len()) || !n.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(DomainError::invalid(
                "account_number_invalid",
                "account number must be 6 to 34 letters or digits",
                Some("bank_account.account_number"),
            ));
        }
        Ok(Self::BankAccount { last4: n[n.len() - 4..].to_owned(), account_number: n.to_owned() })
    }

    pub fn pix(key: &str) -> DomainResult<Self> {
        let k = key.trim();
        if k.is_empty() || k.len() > 77 || k.chars().any(char::is_whitespace) {
            return Err(DomainError::invalid(
                "pix_key_invalid",
                "pix key must be 1 to 77 characters without spaces",
                Some("pix.key"),
            ));
        }
        Ok(Self::Pix { key: k.to_owned() })
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentMethod {
    pub id: Id,
    pub customer: Id,
    pub instrument: Instrument,
    /// The gateway it was registered with.
    pub gateway: String,
    pub created: DateTime<Utc>,
    pub livemode: bool,
}

/// Where payouts go: a bank account or a pix key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutDestination {
    pub id: Id,
    pub customer: Id,
    pub instrument: Instrument,
    pub created: DateTime<Utc>,
    pub livemode: bool,
}

impl PayoutDestination {
    pub fn new(
        id: Id,
        customer: Id,
        instrument: Instrument,
        created: DateTime<Utc>,
        livemode: bool,
    ) -> DomainResult<Self> {
        if instrument.method_type() == MethodType::Card {
            return Err(DomainError::invalid(
                "destination_invalid",
                "payouts go to a bank account or a pix key",
                Some("type"),
            ));
        }
        Ok(Self { id, customer, instrument, created, livemode })
    }
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

/// One routing rule: for this method type (and currency, if given), try these gateways in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingRule {
    pub method_type: MethodType,
    #[serde(default)]
    pub currency: Option<Currency>,
    pub gateways: Vec<String>,
}

/// A tenant's routing rules, first match wins; validated when set through the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingTable {
    pub rules: Vec<RoutingRule>,
}

impl RoutingTable {
    pub fn new(rules: Vec<RoutingRule>, known_gateways: &[&str]) -> DomainResult<Self> {
        if rules.is_empty() || rules.len() > 50 {
            return Err(DomainError::invalid("routes_invalid", "give 1 to 50 routing rules", Some("rules")));
        }
        for rule in &rules {
            if rule.gateways.is_empty() {
                return Err(DomainError::invalid(
                    "routes_invalid",
                    "each rule names at least one gateway",
                    Some("rules.gateways"),
                ));
            }
            if let Some(unknown) = rule.gateways.iter().find(|g| !known_gateways.contains(&g.as_str())) {
                return Err(DomainError::invalid(
                    "gateway_unknown",
                    format!("unknown gateway '{unknown}'"),
                    Some("rules.gateways"),
                ));
            }
        }
        Ok(Self { rules })
    }

    /// Gateways to try, in order, for a method type and currency, skipping unavailable ones
    /// (`available` answers from recent timeouts and 5xx answers).
    pub fn candidates(&self, method: MethodType, currency: Currency, available: impl Fn(&str) -> bool) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for rule in self.rules.iter().filter(|r| r.method_type == method && r.currency.is_none_or(|c| c == currency)) {
            for g in &rule.gateways {
                if available(g) && !out.contains(g) {
                    out.push(g.clone());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_test_cards_pass_luhn_and_typos_do_not() {
        for n in ["4242424242424242", "4000000000000002", "4000000000009995", "4000000000000119", "4000000000000259"] {
            assert!(Instrument::card(n).is_ok(), "{n}");
        }
        assert!(Instrument::card("4242424242424241").is_err());
        assert!(Instrument::card("4242").is_err());
        assert_eq!(
            Instrument::card("4242 4242 4242 4242").unwrap(),
            Instrument::Card { token: "4242424242424242".into(), last4: "4242".into() }
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
    fn routing_follows_the_rules_and_falls_back_past_unavailable_gateways() {
        let usd = Currency::parse("usd", "c").unwrap();
        let brl = Currency::parse("brl", "c").unwrap();
        let table = RoutingTable::new(
            vec![
                RoutingRule {
                    method_type: MethodType::Card,
                    currency: Some(brl),
                    gateways: vec!["pagbank".into(), "stripe".into()],
                },
                RoutingRule {
                    method_type: MethodType::Card,
                    currency: None,
                    gateways: vec!["stripe".into(), "sandbox".into()],
                },
                RoutingRule { method_type: MethodType::Pix, currency: None, gateways: vec!["pagbank".into()] },
            ],
            &["stripe", "pagbank", "sandbox"],
        )
        .unwrap();
        assert_eq!(table.candidates(MethodType::Card, brl, |_| true), vec!["pagbank", "stripe", "sandbox"]);
        assert_eq!(table.candidates(MethodType::Card, usd, |_| true), vec!["stripe", "sandbox"]);
        assert_eq!(table.candidates(MethodType::Card, usd, |g| g != "stripe"), vec!["sandbox"]);
        assert!(table.candidates(MethodType::BankAccount, usd, |_| true).is_empty());
        assert!(
            RoutingTable::new(
                vec![RoutingRule { method_type: MethodType::Card, currency: None, gateways: vec!["nope".into()] }],
                &["stripe"]
            )
            .is_err()
        );
    }

    #[test]
    fn payouts_never_go_to_a_card() {
        let card = Instrument::card("4242424242424242").unwrap();
        let id = Id::from_trusted("pd_1".into());
        let cus = Id::from_trusted("cus_1".into());
        assert!(PayoutDestination::new(id.clone(), cus.clone(), card, Utc::now(), false).is_err());
        assert!(
            PayoutDestination::new(id, cus, Instrument::pix("pix-ok@example.com").unwrap(), Utc::now(), false).is_ok()
        );
    }
}
