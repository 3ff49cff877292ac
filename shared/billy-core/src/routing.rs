//! Gateway routing, as data: a tenant's ordered rules choose the gateways for a payment method
//! type, currency and amount range (in order, the cheapest first by each gateway's fee, or spread
//! by weight), later matching rules serving as the fallback list; only gateways that hold a token
//! for the method are ever chosen, and a circuit breaker skips a gateway that keeps failing.

use crate::error::{DomainError, DomainResult};
use crate::money::{Currency, Money, round_minor};
use crate::payment_method::{GatewayToken, MethodType, PaymentMethod};
use chrono::{DateTime, Duration, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

/// How a rule orders its gateways.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// As listed.
    #[default]
    Ordered,
    /// The lowest fee for this amount first (ties keep the listed order).
    Cheapest,
    /// One gateway picked by weight (stable per transaction), the others after it as listed.
    Weighted,
}

/// What a gateway costs per transaction: a fixed part in minor units and a percentage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fee {
    #[serde(default)]
    pub fixed: i64,
    #[serde(default)]
    pub percent: Decimal,
}

impl Fee {
    pub fn of(&self, amount: i64) -> i64 {
        let variable = round_minor(Decimal::from(amount) * self.percent / Decimal::from(100)).unwrap_or(i64::MAX / 2);
        self.fixed.saturating_add(variable)
    }
}

/// One routing rule: for this method type (and currency and amount range, when given), these
/// gateways, ordered by `strategy`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingRule {
    pub method_type: MethodType,
    #[serde(default)]
    pub currency: Option<Currency>,
    #[serde(default)]
    pub amount_min: Option<i64>,
    #[serde(default)]
    pub amount_max: Option<i64>,
    pub gateways: Vec<String>,
    #[serde(default)]
    pub strategy: Strategy,
    /// For `weighted`: each gateway's share (gateways left out get none).
    #[serde(default)]
    pub weights: BTreeMap<String, u32>,
}

impl RoutingRule {
    fn matches(&self, method: MethodType, money: Money) -> bool {
        self.method_type == method
            && self.currency.is_none_or(|c| c == money.currency)
            && self.amount_min.is_none_or(|m| money.amount >= m)
            && self.amount_max.is_none_or(|m| money.amount <= m)
    }

    /// This rule's gateways in the order it prefers them for `money` (`seed`: the transaction).
    fn ordered(&self, money: Money, fees: &BTreeMap<String, Fee>, seed: &str) -> Vec<String> {
        let mut out = self.gateways.clone();
        match self.strategy {
            Strategy::Ordered => {}
            Strategy::Cheapest => out.sort_by_key(|g| fees.get(g).map_or(0, |f| f.of(money.amount))),
            Strategy::Weighted => {
                let total: u64 = out.iter().map(|g| u64::from(*self.weights.get(g).unwrap_or(&0))).sum();
                if total > 0 {
                    use sha2::{Digest, Sha256};
                    let digest = Sha256::digest(seed.as_bytes());
                    let mut ticket = u64::from_be_bytes(digest[..8].try_into().unwrap_or([0; 8])) % total;
                    let picked = out.iter().position(|g| {
                        let w = u64::from(*self.weights.get(g).unwrap_or(&0));
                        if ticket < w {
                            true
                        } else {
                            ticket -= w;
                            false
                        }
                    });
                    if let Some(i) = picked {
                        let first = out.remove(i);
                        out.insert(0, first);
                    }
                }
            }
        }
        out
    }
}

/// When a gateway is skipped for failing: after `failures` calls in a row that reached no
/// decision (not sent, or unknown), for `cooldown_seconds`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerPolicy {
    pub failures: u32,
    pub cooldown_seconds: u32,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self { failures: 5, cooldown_seconds: 60 }
    }
}

/// A tenant's routing rules, matching rules in order; validated when set through the API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingTable {
    pub rules: Vec<RoutingRule>,
    #[serde(default)]
    pub fees: BTreeMap<String, Fee>,
    #[serde(default, rename = "circuit_breaker")]
    pub breaker: BreakerPolicy,
}

fn invalid(code: &'static str, message: impl Into<String>, param: &str) -> DomainError {
    DomainError::invalid(code, message, Some(param))
}

impl RoutingTable {
    pub fn new(
        rules: Vec<RoutingRule>,
        fees: BTreeMap<String, Fee>,
        breaker: BreakerPolicy,
        known_gateways: &[&str],
    ) -> DomainResult<Self> {
        if rules.is_empty() || rules.len() > 50 {
            return Err(invalid("routes_invalid", "give 1 to 50 routing rules", "rules"));
        }
        let known = |g: &str, param: &str| {
            if known_gateways.contains(&g) {
                Ok(())
            } else {
                Err(invalid("gateway_unknown", format!("unknown gateway '{g}'"), param))
            }
        };
        for rule in &rules {
            if rule.gateways.is_empty() || rule.gateways.len() > 10 {
                return Err(invalid("routes_invalid", "each rule names 1 to 10 gateways", "rules.gateways"));
            }
            for g in &rule.gateways {
                known(g, "rules.gateways")?;
            }
            if let (Some(min), Some(max)) = (rule.amount_min, rule.amount_max)
                && min > max
            {
                return Err(invalid("routes_invalid", "amount_min must not exceed amount_max", "rules.amount_min"));
            }
            if rule.amount_min.is_some_and(|a| a < 0) || rule.amount_max.is_some_and(|a| a < 0) {
                return Err(invalid("routes_invalid", "amounts must not be negative", "rules.amount_min"));
            }
            if rule.strategy == Strategy::Weighted && rule.weights.values().all(|w| *w == 0) {
                return Err(invalid("routes_invalid", "a weighted rule gives some gateway a weight", "rules.weights"));
            }
            if let Some(stranger) = rule.weights.keys().find(|g| !rule.gateways.contains(g)) {
                return Err(invalid(
                    "routes_invalid",
                    format!("'{stranger}' is weighted but not listed"),
                    "rules.weights",
                ));
            }
        }
        for (g, fee) in &fees {
            known(g, "fees")?;
            if fee.fixed < 0 || fee.percent.is_sign_negative() || fee.percent > Decimal::from(100) {
                return Err(invalid(
                    "routes_invalid",
                    "a fee is a non-negative amount and a percentage up to 100",
                    "fees",
                ));
            }
        }
        if breaker.failures == 0 || breaker.cooldown_seconds == 0 || breaker.cooldown_seconds > 3600 {
            return Err(invalid(
                "routes_invalid",
                "the circuit breaker opens after 1 or more failures, for 1 to 3600 seconds",
                "circuit_breaker",
            ));
        }
        Ok(Self { rules, fees, breaker })
    }

    /// Without rules of its own, a tenant's charges try the gateways in the order given (the
    /// deployment's and its own accounts'), for every method type.
    pub fn in_order(gateways: &[&str]) -> Self {
        let list: Vec<String> = gateways.iter().map(|g| (*g).to_owned()).collect();
        Self {
            rules: MethodType::ALL
                .into_iter()
                .map(|method_type| RoutingRule {
                    method_type,
                    currency: None,
                    amount_min: None,
                    amount_max: None,
                    gateways: list.clone(),
                    strategy: Strategy::Ordered,
                    weights: BTreeMap::new(),
                })
                .collect(),
            fees: BTreeMap::new(),
            breaker: BreakerPolicy::default(),
        }
    }

    /// Gateways to try, in order, for a method type and amount, skipping unavailable ones.
    pub fn candidates(
        &self,
        method: MethodType,
        money: Money,
        seed: &str,
        available: impl Fn(&str) -> bool,
    ) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for rule in self.rules.iter().filter(|r| r.matches(method, money)) {
            for g in rule.ordered(money, &self.fees, seed) {
                if available(&g) && !out.contains(&g) {
                    out.push(g);
                }
            }
        }
        out
    }

    /// The gateways that may charge `method`, in routing order: only those holding a token for it.
    pub fn route(
        &self,
        method: &PaymentMethod,
        money: Money,
        seed: &str,
        available: impl Fn(&str) -> bool,
    ) -> Vec<GatewayToken> {
        self.candidates(method.kind, money, seed, |g| method.token_for(g).is_some() && available(g))
            .into_iter()
            .filter_map(|g| method.tokens.iter().find(|t| t.gateway == g).cloned())
            .collect()
    }
}

/// The circuit breaker of one warm function instance: failures in a row per gateway, on the
/// injected clock (a test clock's time does not drive it: gateways fail in real time). After its
/// cooldown an open breaker lets calls through again; the first of them that fails opens it again.
#[derive(Debug, Default)]
pub struct CircuitBreaker {
    state: Mutex<HashMap<String, GatewayHealth>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct GatewayHealth {
    failures_in_a_row: u32,
    open_until: Option<DateTime<Utc>>,
}

impl CircuitBreaker {
    pub fn available(&self, gateway: &str, now: DateTime<Utc>) -> bool {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.get(gateway).and_then(|h| h.open_until).is_none_or(|until| now >= until)
    }

    pub fn succeeded(&self, gateway: &str) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).remove(gateway);
    }

    pub fn failed(&self, gateway: &str, policy: BreakerPolicy, now: DateTime<Utc>) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let health = state.entry(gateway.to_owned()).or_default();
        health.failures_in_a_row += 1;
        let trial_failed = health.open_until.is_some_and(|until| now >= until);
        if health.failures_in_a_row >= policy.failures || trial_failed {
            health.open_until = Some(now + Duration::seconds(i64::from(policy.cooldown_seconds)));
            health.failures_in_a_row = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Id;
    use crate::payment_method::MethodDetails;
    use rust_decimal_macros::dec;

    fn money(amount: i64, currency: &str) -> Money {
        Money::new(amount, Currency::parse(currency, "c").unwrap())
    }

    fn rule(method_type: MethodType, currency: Option<&str>, gateways: &[&str]) -> RoutingRule {
        RoutingRule {
            method_type,
            currency: currency.map(|c| Currency::parse(c, "c").unwrap()),
            amount_min: None,
            amount_max: None,
            gateways: gateways.iter().map(|g| (*g).to_owned()).collect(),
            strategy: Strategy::Ordered,
            weights: BTreeMap::new(),
        }
    }

    fn table(rules: Vec<RoutingRule>) -> RoutingTable {
        RoutingTable::new(rules, BTreeMap::new(), BreakerPolicy::default(), &["stripe", "adyen", "sandbox"]).unwrap()
    }

    #[test]
    fn matching_rules_in_order_with_later_ones_as_the_fallback() {
        let t = table(vec![
            rule(MethodType::Pix, Some("brl"), &["adyen"]),
            rule(MethodType::Card, Some("brl"), &["adyen", "stripe"]),
            rule(MethodType::Card, None, &["stripe", "sandbox"]),
        ]);
        assert_eq!(
            t.candidates(MethodType::Card, money(100, "brl"), "s", |_| true),
            vec!["adyen", "stripe", "sandbox"]
        );
        assert_eq!(t.candidates(MethodType::Card, money(100, "usd"), "s", |_| true), vec!["stripe", "sandbox"]);
        assert_eq!(t.candidates(MethodType::Card, money(100, "usd"), "s", |g| g != "stripe"), vec!["sandbox"]);
        assert_eq!(t.candidates(MethodType::Pix, money(100, "brl"), "s", |_| true), vec!["adyen"]);
        assert!(t.candidates(MethodType::Pix, money(100, "usd"), "s", |_| true).is_empty());
    }

    #[test]
    fn amount_ranges_pick_the_rule() {
        let mut big = rule(MethodType::Card, None, &["adyen"]);
        big.amount_min = Some(100_000);
        let t = table(vec![big, rule(MethodType::Card, None, &["stripe"])]);
        assert_eq!(t.candidates(MethodType::Card, money(99_999, "usd"), "s", |_| true), vec!["stripe"]);
        assert_eq!(t.candidates(MethodType::Card, money(100_000, "usd"), "s", |_| true), vec!["adyen", "stripe"]);
    }

    #[test]
    fn the_cheapest_capable_gateway_comes_first_for_each_amount() {
        // stripe 30 + 2.9 %, adyen 12 + 3.5 %: stripe is cheaper above 30 USD (3000 cents)
        let mut cheapest = rule(MethodType::Card, None, &["adyen", "stripe"]);
        cheapest.strategy = Strategy::Cheapest;
        let fees = BTreeMap::from([
            ("stripe".to_owned(), Fee { fixed: 30, percent: dec!(2.9) }),
            ("adyen".to_owned(), Fee { fixed: 12, percent: dec!(3.5) }),
        ]);
        let t = RoutingTable::new(vec![cheapest], fees, BreakerPolicy::default(), &["stripe", "adyen"]).unwrap();
        assert_eq!(t.fees["stripe"].of(1000), 59);
        assert_eq!(t.candidates(MethodType::Card, money(1000, "usd"), "s", |_| true), vec!["adyen", "stripe"]);
        assert_eq!(t.candidates(MethodType::Card, money(10_000, "usd"), "s", |_| true), vec!["stripe", "adyen"]);
    }

    #[test]
    fn weights_spread_transactions_stably_and_keep_the_others_as_fallback() {
        let mut weighted = rule(MethodType::Card, None, &["stripe", "adyen"]);
        weighted.strategy = Strategy::Weighted;
        weighted.weights = BTreeMap::from([("stripe".to_owned(), 3), ("adyen".to_owned(), 1)]);
        let t = table(vec![weighted]);
        let firsts: Vec<String> = (0..400)
            .map(|i| t.candidates(MethodType::Card, money(100, "usd"), &format!("txn_{i}"), |_| true).remove(0))
            .collect();
        let stripe = firsts.iter().filter(|g| *g == "stripe").count();
        assert!((250..350).contains(&stripe), "about 3 in 4: {stripe}");
        let again = t.candidates(MethodType::Card, money(100, "usd"), "txn_7", |_| true);
        assert_eq!(again, t.candidates(MethodType::Card, money(100, "usd"), "txn_7", |_| true));
        assert_eq!(again.len(), 2);
    }

    #[test]
    fn only_gateways_holding_a_token_are_routed_to() {
        let t = table(vec![rule(MethodType::Card, None, &["stripe", "adyen", "sandbox"])]);
        let method = PaymentMethod {
            id: Id::from_trusted("pm_1".into()),
            customer: Id::from_trusted("cus_1".into()),
            kind: MethodType::Card,
            tokens: vec![GatewayToken { gateway: "adyen".into(), token: "tok_a".into(), customer: None }],
            details: MethodDetails::default(),
            created: Utc::now(),
            livemode: false,
        };
        let route = t.route(&method, money(100, "usd"), "s", |_| true);
        assert_eq!(route.iter().map(|r| r.gateway.as_str()).collect::<Vec<_>>(), vec!["adyen"]);
    }

    #[test]
    fn bad_tables_are_refused() {
        let known = ["stripe"];
        let policy = BreakerPolicy::default();
        assert!(RoutingTable::new(vec![], BTreeMap::new(), policy, &known).is_err());
        assert!(
            RoutingTable::new(vec![rule(MethodType::Card, None, &["nope"])], BTreeMap::new(), policy, &known).is_err()
        );
        let mut backwards = rule(MethodType::Card, None, &["stripe"]);
        (backwards.amount_min, backwards.amount_max) = (Some(10), Some(5));
        assert!(RoutingTable::new(vec![backwards], BTreeMap::new(), policy, &known).is_err());
        let no_breaks = BreakerPolicy { failures: 0, cooldown_seconds: 10 };
        assert!(
            RoutingTable::new(vec![rule(MethodType::Card, None, &["stripe"])], BTreeMap::new(), no_breaks, &known)
                .is_err()
        );
    }

    #[test]
    fn a_gateway_that_keeps_failing_is_skipped_for_its_cooldown() {
        let breaker = CircuitBreaker::default();
        let policy = BreakerPolicy { failures: 2, cooldown_seconds: 30 };
        let t0 = Utc::now();
        breaker.failed("stripe", policy, t0);
        assert!(breaker.available("stripe", t0));
        breaker.failed("stripe", policy, t0);
        assert!(!breaker.available("stripe", t0 + Duration::seconds(29)));
        assert!(breaker.available("stripe", t0 + Duration::seconds(30)));
        // the trial call after the cooldown fails: open again at once
        breaker.failed("stripe", policy, t0 + Duration::seconds(30));
        assert!(!breaker.available("stripe", t0 + Duration::seconds(59)));
        assert!(breaker.available("stripe", t0 + Duration::seconds(60)));
        breaker.failed("adyen", policy, t0);
        breaker.succeeded("adyen");
        breaker.failed("adyen", policy, t0);
        assert!(breaker.available("adyen", t0), "a success resets the count");
    }
}
