//! The verification job's record and its pure checks: a month's invoices replayed from the audit
//! journal and compared with what is stored, their metered lines recounted from the usage events,
//! and the month's settlements recomputed from the replayed invoices. Every difference is listed
//! (entity, field, stored, recomputed); a run with any is `failed` and announced.

use crate::error::DomainResult;
use crate::ids::Id;
use crate::invoice::Invoice;
use crate::journal::{self, Mismatch};
use crate::settlement::{Month, SettledInvoice, Settlement, figures};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};

/// At most this many mismatches are kept on the record (all are counted), each value shown up to
/// `MAX_VALUE_CHARS`: the record (and its `verification.failed` announcement) stays well under
/// DynamoDB's and EventBridge's item sizes.
pub const MAX_LISTED: usize = 200;
pub const MAX_VALUE_CHARS: usize = 200;

fn shown(value: String) -> String {
    if value.chars().count() <= MAX_VALUE_CHARS {
        return value;
    }
    let mut cut: String = value.chars().take(MAX_VALUE_CHARS).collect();
    cut.push('…');
    cut
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VerificationStatus {
    Running,
    /// Everything agreed.
    Succeeded,
    /// Some stored state disagrees with its recomputation: see `mismatches`.
    Failed,
}

/// One difference: `stored` is what Billy holds, `recomputed` what the journal and usage say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Difference {
    pub entity: String,
    pub field: String,
    pub stored: String,
    pub recomputed: String,
}

impl From<Mismatch> for Difference {
    fn from(m: Mismatch) -> Self {
        Self { entity: m.entity, field: m.field, stored: m.stored, recomputed: m.replayed }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    pub id: Id,
    pub month: Month,
    pub status: VerificationStatus,
    /// `api` or `schedule`.
    pub trigger: String,
    pub created: DateTime<Utc>,
    pub finished: Option<DateTime<Utc>>,
    pub invoices_checked: u64,
    pub settlements_checked: u64,
    pub usage_totals_checked: u64,
    pub mismatch_count: u64,
    pub mismatches: Vec<Difference>,
    pub livemode: bool,
    pub version: u64,
}

impl Verification {
    pub fn new(id: Id, month: Month, trigger: &str, at: DateTime<Utc>, livemode: bool) -> Self {
        Self {
            id,
            month,
            status: VerificationStatus::Running,
            trigger: trigger.to_owned(),
            created: at,
            finished: None,
            invoices_checked: 0,
            settlements_checked: 0,
            usage_totals_checked: 0,
            mismatch_count: 0,
            mismatches: Vec::new(),
            livemode,
            version: 1,
        }
    }

    /// Adds what one part of the run found.
    pub fn record(&mut self, found: Vec<Difference>) {
        self.mismatch_count += found.len() as u64;
        let room = MAX_LISTED.saturating_sub(self.mismatches.len());
        self.mismatches.extend(found.into_iter().take(room).map(|d| Difference {
            stored: shown(d.stored),
            recomputed: shown(d.recomputed),
            ..d
        }));
    }

    pub fn finish(&mut self, at: DateTime<Utc>) {
        self.mismatches.sort_by(|a, b| (&a.entity, &a.field).cmp(&(&b.entity, &b.field)));
        self.status = if self.mismatch_count == 0 { VerificationStatus::Succeeded } else { VerificationStatus::Failed };
        self.finished = Some(at);
        self.version += 1;
    }
}

/// An invoice against its journal: every field that differs, and the replayed invoice (to
/// recompute what depends on it); `None` when the journal has no state for it.
pub fn check_invoice(
    stored: &Invoice,
    events: &[crate::audit::AuditEvent],
) -> DomainResult<(Vec<Difference>, Option<Invoice>)> {
    let found = journal::verify_invoice(stored, events)?.into_iter().map(Difference::from).collect();
    Ok((found, journal::fold_invoice(events)?))
}

/// An invoice's metered lines against the usage events of its period: per metric, the quantity
/// it priced and the quantity the events add up to.
pub fn check_usage(inv: &Invoice, counted: &BTreeMap<String, Decimal>) -> Vec<Difference> {
    let mut priced: BTreeMap<String, Decimal> = BTreeMap::new();
    for item in &inv.items {
        if let Some(metric) = &item.metric {
            *priced.entry(metric.clone()).or_default() +=
                item.quantity_decimal.unwrap_or_else(|| Decimal::from(item.quantity));
        }
    }
    priced
        .into_iter()
        .filter_map(|(metric, quantity)| {
            let events = counted.get(&metric).copied().unwrap_or_default();
            (quantity.normalize() != events.normalize()).then(|| Difference {
                entity: inv.id.to_string(),
                field: format!("usage.{metric}.quantity"),
                stored: quantity.normalize().to_string(),
                recomputed: events.normalize().to_string(),
            })
        })
        .collect()
}

/// A settlement against its invoices as the journal has them: each figure, and each listed
/// invoice's total.
pub fn check_settlement(st: &Settlement, replayed: &HashMap<Id, SettledInvoice>) -> DomainResult<Vec<Difference>> {
    let mut out = Vec::new();
    let diff = |field: &str, stored: String, recomputed: String| Difference {
        entity: st.id.to_string(),
        field: field.to_owned(),
        stored,
        recomputed,
    };
    let mut lines = Vec::new();
    for l in &st.invoices {
        match replayed.get(&l.invoice) {
            Some(again) => {
                let again = again.clone();
                if again.total != l.total {
                    out.push(diff(
                        &format!("invoices.{}.total", l.invoice),
                        l.total.to_string(),
                        again.total.to_string(),
                    ));
                }
                lines.push(again);
            }
            None => out.push(diff(&format!("invoices.{}", l.invoice), "listed".into(), "no journal".into())),
        }
    }
    let f = figures(&lines)?;
    for (field, stored, recomputed) in [
        ("charged", st.charged, f.charged),
        ("paid_out", st.paid_out, f.paid_out),
        ("commission", st.commission, f.commission),
        ("net", st.net, f.net),
    ] {
        if stored != recomputed {
            out.push(diff(field, stored.to_string(), recomputed.to_string()));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::invoice::InvoiceItem;
    use crate::money::Currency;
    use crate::plan::Direction;
    use chrono::TimeZone;

    fn invoice(total: i64) -> Invoice {
        let at = Utc.with_ymd_and_hms(2026, 6, 1, 0, 0, 0).unwrap();
        let currency = Currency::parse("usd", "currency").unwrap();
        let mut inv = Invoice::draft(
            Id::from_trusted("inv_1".into()),
            Id::from_trusted("cus_1".into()),
            None,
            Direction::Debit,
            currency,
            None,
            at,
            false,
        );
        let mut item = InvoiceItem::new("clicks", 10, total / 10).unwrap();
        item.metric = Some("clicks".into());
        inv.add_items(vec![item]).unwrap();
        inv
    }

    #[test]
    fn metered_lines_must_add_up_to_their_events() {
        let inv = invoice(100);
        let counted = BTreeMap::from([("clicks".to_owned(), Decimal::from(10))]);
        assert!(check_usage(&inv, &counted).is_empty());
        let short = BTreeMap::from([("clicks".to_owned(), Decimal::new(95, 1))]);
        assert_eq!(
            check_usage(&inv, &short),
            vec![Difference {
                entity: "inv_1".into(),
                field: "usage.clicks.quantity".into(),
                stored: "10".into(),
                recomputed: "9.5".into()
            }]
        );
    }

    #[test]
    fn a_record_counts_every_mismatch_and_lists_a_bounded_number() {
        let at = Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).unwrap();
        let mut v = Verification::new(Id::from_trusted("ver_1".into()), Month::of(at), "api", at, false);
        let one = |i: usize| Difference {
            entity: format!("inv_{i}"),
            field: "total".into(),
            stored: "1".into(),
            recomputed: "2".into(),
        };
        v.record((0..MAX_LISTED + 5).map(one).collect());
        v.record(vec![Difference {
            entity: "inv_x".into(),
            field: "items".into(),
            stored: "x".repeat(5000),
            recomputed: "y".into(),
        }]);
        v.finish(at);
        assert_eq!((v.status, v.mismatch_count, v.mismatches.len()), (VerificationStatus::Failed, 206, MAX_LISTED));
        let mut clean = Verification::new(Id::from_trusted("ver_2".into()), Month::of(at), "api", at, false);
        clean.finish(at);
        assert_eq!(clean.status, VerificationStatus::Succeeded);
    }
}
