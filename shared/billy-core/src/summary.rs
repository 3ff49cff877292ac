//! A customer's month at a glance (what a marketplace shows its users, and what the dashboard
//! charts): per currency, what was charged, what was paid out and the commission on it, the net,
//! the usage of each metric with what it was priced at so far, and a daily series. Invoices count
//! in the month their settlement would (`crate::settlement::settlement_month`); the invoices that
//! move a settlement's net are left out, since the month's own invoices already are its figures.

use crate::error::DomainResult;
use crate::invoice::{Invoice, InvoiceStatus};
use crate::money::{Currency, checked_sum};
use crate::plan::Direction;
use crate::settlement::{Month, settlement_month};
use crate::usage::UsageEvent;
use chrono::{Duration, NaiveDate};
use rust_decimal::Decimal;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MetricSummary {
    pub metric: String,
    pub direction: Option<Direction>,
    /// Everything reported for the month so far, priced or not.
    pub quantity: Decimal,
    /// What its priced periods came to (the month's closed periods).
    pub amount: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Day {
    pub date: String,
    pub charged: i64,
    pub paid_out: i64,
    /// Usage reported for that day, per metric.
    pub usage: BTreeMap<String, Decimal>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CurrencySummary {
    pub currency: Currency,
    pub charged: i64,
    pub paid_out: i64,
    pub commission: i64,
    pub net: i64,
    pub invoices: usize,
    pub metrics: Vec<MetricSummary>,
    /// Every day of the month, in order.
    pub daily: Vec<Day>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MonthSummary {
    pub month: Month,
    pub currencies: Vec<CurrencySummary>,
    /// False when a period had more events than a summary reads (`MAX_EVENTS_PER_TOTAL`): the
    /// usage quantities are then a lower bound (priced amounts are always whole).
    pub usage_complete: bool,
}

/// How many events of one period's total a summary reads for its series.
pub const MAX_EVENTS_PER_TOTAL: usize = 20_000;

/// One usage event with what its subscription is priced in.
#[derive(Debug, Clone)]
pub struct PricedUsage {
    pub currency: Currency,
    pub direction: Direction,
    pub event: UsageEvent,
}

fn counts(inv: &Invoice, month: Month) -> bool {
    !matches!(inv.status, InvoiceStatus::Draft | InvoiceStatus::Canceled)
        && inv.settlement.is_none()
        && settlement_month(inv) == month
}

fn days(month: Month) -> Vec<NaiveDate> {
    let first = month.start().date_naive();
    let next = month.next().start().date_naive();
    first.iter_days().take_while(|d| *d < next).collect()
}

/// The summary of `month` from the customer's invoices and the month's usage events.
pub fn summarize(
    month: Month,
    invoices: &[Invoice],
    usage: &[PricedUsage],
    usage_complete: bool,
) -> DomainResult<MonthSummary> {
    let mut by_currency: BTreeMap<String, (Currency, Vec<&Invoice>, Vec<&PricedUsage>)> = BTreeMap::new();
    for inv in invoices.iter().filter(|i| counts(i, month)) {
        by_currency.entry(inv.currency.to_string()).or_insert((inv.currency, Vec::new(), Vec::new())).1.push(inv);
    }
    for u in usage.iter().filter(|u| Month::of(u.event.timestamp) == month) {
        by_currency.entry(u.currency.to_string()).or_insert((u.currency, Vec::new(), Vec::new())).2.push(u);
    }
    let mut currencies = Vec::new();
    for (_, (currency, invs, used)) in by_currency {
        let total = |d: Direction| checked_sum(invs.iter().filter(|i| i.direction == d).map(|i| i.total));
        let (charged, paid_out) = (total(Direction::Debit)?, total(Direction::Payout)?);
        let cuts: Vec<i64> = invs
            .iter()
            .filter(|i| i.direction == Direction::Payout)
            .map(|i| crate::settlement::commission_of(i))
            .collect::<DomainResult<_>>()?;
        let commission = checked_sum(cuts)?;
        let mut metrics: BTreeMap<String, MetricSummary> = BTreeMap::new();
        for u in &used {
            let m = metrics.entry(u.event.metric.clone()).or_default();
            m.metric.clone_from(&u.event.metric);
            m.direction = Some(u.direction);
            m.quantity += u.event.quantity;
        }
        for inv in &invs {
            for item in inv.items.iter().filter(|i| i.metric.is_some()) {
                let metric = item.metric.clone().unwrap_or_default();
                let m = metrics.entry(metric.clone()).or_default();
                m.metric = metric;
                m.direction.get_or_insert(inv.direction);
                m.amount = checked_sum([m.amount, item.amount])?;
            }
        }
        let mut daily: BTreeMap<NaiveDate, Day> =
            days(month).into_iter().map(|d| (d, Day { date: d.to_string(), ..Day::default() })).collect();
        for inv in &invs {
            // The day its period ends (its last instant), or its finalization for a one-off.
            let day = match &inv.period {
                Some(p) => (p.end - Duration::seconds(1)).date_naive(),
                None => inv.finalized_at.unwrap_or(inv.created).date_naive(),
            };
            if let Some(d) = daily.get_mut(&day) {
                match inv.direction {
                    Direction::Debit => d.charged = checked_sum([d.charged, inv.total])?,
                    Direction::Payout => d.paid_out = checked_sum([d.paid_out, inv.total])?,
                }
            }
        }
        for u in &used {
            if let Some(d) = daily.get_mut(&u.event.timestamp.date_naive()) {
                *d.usage.entry(u.event.metric.clone()).or_default() += u.event.quantity;
            }
        }
        currencies.push(CurrencySummary {
            currency,
            charged,
            paid_out,
            commission,
            net: charged.checked_sub(paid_out).ok_or_else(|| crate::DomainError::unexpected("net overflow"))?,
            invoices: invs.len(),
            metrics: metrics.into_values().collect(),
            daily: daily.into_values().collect(),
        });
    }
    Ok(MonthSummary { month, currencies, usage_complete })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Id;
    use crate::invoice::{Adjustment, AdjustmentKind, InvoiceAction, InvoiceItem};
    use crate::schedule::Period;
    use chrono::{TimeZone, Utc};

    fn id(raw: &str) -> Id {
        Id::from_trusted(raw.to_owned())
    }

    fn usd() -> Currency {
        Currency::parse("usd", "currency").unwrap()
    }

    fn june_invoice(name: &str, direction: Direction, gross: i64, commission: i64) -> Invoice {
        let at = |m, d| Utc.with_ymd_and_hms(2026, m, d, 0, 0, 0).unwrap();
        let period = Period { index: 0, start: at(6, 1), end: at(7, 1) };
        let mut inv =
            Invoice::draft(id(name), id("cus_1"), Some(id("sub_1")), direction, usd(), Some(period), at(7, 1), false);
        let mut item = InvoiceItem::new("clicks", 1, gross).unwrap();
        item.metric = Some(if direction == Direction::Debit { "ad_clicks" } else { "site_clicks" }.to_owned());
        inv.add_items(vec![item]).unwrap();
        if commission > 0 {
            inv.add_adjustment(Adjustment {
                kind: AdjustmentKind::Commission,
                amount: -commission,
                reason: "20%".into(),
            })
            .unwrap();
        }
        inv.apply(InvoiceAction::Finalize, at(7, 1)).unwrap();
        inv
    }

    fn click(metric: &str, direction: Direction, day: u32, quantity: i64) -> PricedUsage {
        let at = Utc.with_ymd_and_hms(2026, 6, day, 12, 0, 0).unwrap();
        let period = Period { index: 0, start: at, end: at };
        PricedUsage {
            currency: usd(),
            direction,
            event: UsageEvent {
                id: format!("{metric}-{day}"),
                subscription: id("sub_1"),
                metric: metric.to_owned(),
                quantity: Decimal::from(quantity),
                timestamp: at,
                dimensions: BTreeMap::new(),
                period,
                received: at,
            },
        }
    }

    #[test]
    fn a_marketplace_month_shows_charged_paid_out_commission_net_per_metric_and_per_day() {
        let month = Month::parse("2026-06", "month").unwrap();
        let mut net_invoice = june_invoice("inv_net", Direction::Debit, 2600, 0);
        net_invoice.settlement = Some(id("stl_1"));
        let invoices = [
            june_invoice("inv_a", Direction::Debit, 5000, 0),
            june_invoice("inv_b", Direction::Payout, 3000, 600),
            net_invoice,
        ];
        let usage = [
            click("ad_clicks", Direction::Debit, 10, 60),
            click("ad_clicks", Direction::Debit, 11, 40),
            click("site_clicks", Direction::Payout, 11, 30),
        ];
        let summary = summarize(month, &invoices, &usage, true).unwrap();
        let [usd] = summary.currencies.as_slice() else { panic!("{summary:?}") };
        // the settlement's own net invoice is not counted twice
        assert_eq!((usd.charged, usd.paid_out, usd.commission, usd.net, usd.invoices), (5000, 2400, 600, 2600, 2));
        let metrics: Vec<(&str, Decimal, i64)> =
            usd.metrics.iter().map(|m| (m.metric.as_str(), m.quantity, m.amount)).collect();
        assert_eq!(metrics, [("ad_clicks", Decimal::from(100), 5000), ("site_clicks", Decimal::from(30), 3000)]);
        assert_eq!(usd.daily.len(), 30, "every day of June");
        assert_eq!(usd.daily[10].usage.get("ad_clicks"), Some(&Decimal::from(40)));
        assert_eq!((usd.daily[29].charged, usd.daily[29].paid_out), (5000, 2400), "billed on the period's last day");
        // a month with nothing in it has no currency at all
        assert!(
            summarize(Month::parse("2026-05", "month").unwrap(), &invoices, &usage, true)
                .unwrap()
                .currencies
                .is_empty()
        );
    }
}
