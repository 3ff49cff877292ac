//! The transactions ledger for accounting: every money movement as a CSV row, and export jobs that
//! stream a filtered ledger into a file page by page, never holding every row in memory.

use crate::error::{DomainError, DomainResult};
use crate::ids::Id;
use crate::ports::TransactionFilter;
use crate::transaction::{Transaction, TransactionStatus, TransactionType};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub const CSV_HEADER: &str =
    "id,created,type,status,customer,invoice,amount,currency,gateway,gateway_reference,failure_reason,items\r\n";

/// One field, quoted when it holds a comma, a quote or a line break (RFC 4180); a field that a
/// spreadsheet would run as a formula is prefixed with `'` (CSV injection).
fn field(raw: &str) -> String {
    let safe = if raw.starts_with(['=', '+', '-', '@']) { format!("'{raw}") } else { raw.to_owned() };
    if safe.contains([',', '"', '\r', '\n']) { format!("\"{}\"", safe.replace('"', "\"\"")) } else { safe }
}

/// A transaction as one CSV line (ending in CRLF), columns as in `CSV_HEADER`.
pub fn csv_row(t: &Transaction) -> String {
    let kind = serde_json::to_value(t.kind).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    let items = t.items.replace('\n', "; ");
    let cells = [
        t.id.to_string(),
        t.created.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        kind,
        t.status.as_str().to_owned(),
        t.customer.to_string(),
        t.invoice.to_string(),
        t.amount.to_string(),
        t.currency.to_string(),
        t.gateway.clone(),
        t.gateway_reference.clone().unwrap_or_default(),
        t.failure_reason.clone().unwrap_or_default(),
        items,
    ];
    let mut line = cells.iter().map(|c| field(c)).collect::<Vec<_>>().join(",");
    line.push_str("\r\n");
    line
}

/// Parses a transaction type as the API names it.
pub fn parse_type(raw: &str) -> DomainResult<TransactionType> {
    serde_json::from_value(serde_json::Value::String(raw.to_owned())).map_err(|_| {
        DomainError::invalid("parameter_invalid", format!("'{raw}' is not a transaction type"), Some("type"))
    })
}

pub fn parse_status(raw: &str) -> DomainResult<TransactionStatus> {
    serde_json::from_value(serde_json::Value::String(raw.to_owned())).map_err(|_| {
        DomainError::invalid("parameter_invalid", format!("'{raw}' is not a transaction status"), Some("status"))
    })
}

/// Checks a filter's ranges: from before to, min below max, a short item text.
pub fn validate_filter(filter: &TransactionFilter) -> DomainResult<()> {
    if let (Some(from), Some(to)) = (filter.created_from, filter.created_to)
        && from >= to
    {
        return Err(DomainError::invalid(
            "parameter_invalid",
            "created_from must be before created_to",
            Some("created_from"),
        ));
    }
    for (amount, param) in [(filter.amount_min, "amount_min"), (filter.amount_max, "amount_max")] {
        if let Some(a) = amount {
            crate::money::validate_amount(a, param)?;
        }
    }
    if let (Some(min), Some(max)) = (filter.amount_min, filter.amount_max)
        && min > max
    {
        return Err(DomainError::invalid(
            "parameter_invalid",
            "amount_min must not exceed amount_max",
            Some("amount_min"),
        ));
    }
    if filter.item.as_ref().is_some_and(|i| i.is_empty() || i.chars().count() > 100) {
        return Err(DomainError::invalid("parameter_invalid", "item must be 1 to 100 characters", Some("item")));
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportStatus {
    Pending,
    Succeeded,
    Failed,
}

/// A filter as an export keeps it (the ports' filter, in a stable stored form).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExportFilter {
    pub customer: Option<Id>,
    #[serde(rename = "type")]
    pub kind: Option<TransactionType>,
    pub status: Option<TransactionStatus>,
    pub created_from: Option<DateTime<Utc>>,
    pub created_to: Option<DateTime<Utc>>,
    pub amount_min: Option<i64>,
    pub amount_max: Option<i64>,
    pub item: Option<String>,
}

impl From<&ExportFilter> for TransactionFilter {
    fn from(f: &ExportFilter) -> Self {
        Self {
            customer: f.customer.clone(),
            invoice: None,
            kind: f.kind,
            status: f.status,
            created_from: f.created_from,
            created_to: f.created_to,
            amount_min: f.amount_min,
            amount_max: f.amount_max,
            item: f.item.clone(),
        }
    }
}

impl From<&TransactionFilter> for ExportFilter {
    fn from(f: &TransactionFilter) -> Self {
        Self {
            customer: f.customer.clone(),
            kind: f.kind,
            status: f.status,
            created_from: f.created_from,
            created_to: f.created_to,
            amount_min: f.amount_min,
            amount_max: f.amount_max,
            item: f.item.clone(),
        }
    }
}

/// "Run this export": the export queue's message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunExport {
    pub scope: crate::tenant::Scope,
    pub export: Id,
}

pub const RUN_EXPORT: &str = "run_export";

impl RunExport {
    /// The run an `export.created` announcement asks for.
    pub fn from_announcement(event: &crate::ports::DomainEvent) -> Option<Self> {
        let export = event.data["object"]["id"].as_str()?;
        (event.kind == crate::events::EventType::ExportCreated)
            .then(|| Self { scope: event.scope.clone(), export: Id::from_trusted(export.to_owned()) })
    }

    pub fn message(&self) -> DomainResult<crate::ports::QueueMessage> {
        Ok(crate::ports::QueueMessage {
            version: 1,
            kind: RUN_EXPORT.to_owned(),
            body: serde_json::to_value(self).map_err(DomainError::unexpected)?,
        })
    }
}

/// A CSV export job of the transactions ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Export {
    pub id: Id,
    pub filter: ExportFilter,
    pub status: ExportStatus,
    pub rows: u64,
    pub bytes: u64,
    /// Where the file is (a key in the deployment's exports bucket).
    pub file: Option<String>,
    pub failure: Option<String>,
    pub created: DateTime<Utc>,
    pub completed: Option<DateTime<Utc>>,
    pub livemode: bool,
    pub version: u64,
}

impl Export {
    pub fn finish(&mut self, file: String, rows: u64, bytes: u64, at: DateTime<Utc>) -> DomainResult<()> {
        if self.status != ExportStatus::Pending {
            return Err(DomainError::IllegalTransition {
                entity: "export",
                from: format!("{:?}", self.status).to_lowercase(),
                action: "finish".into(),
            });
        }
        (self.status, self.file, self.rows, self.bytes, self.completed) =
            (ExportStatus::Succeeded, Some(file), rows, bytes, Some(at));
        self.version += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;

    #[test]
    fn rows_quote_what_needs_quoting_and_defuse_formulas() {
        let inv =
            crate::invoice::test_draft(crate::plan::Direction::Debit, Currency::parse("usd", "c").unwrap(), Utc::now())
                .with_items(vec![
                    crate::invoice::InvoiceItem::new("Seat, \"pro\"", 1, 1000).unwrap(),
                    crate::invoice::InvoiceItem::new("=HYPERLINK(\"x\")", 1, 1).unwrap(),
                ])
                .unwrap();
        let t = Transaction::for_invoice(
            Id::from_trusted("txn_1".into()),
            &inv,
            TransactionType::Charge,
            1,
            1001,
            Utc::now(),
        );
        let row = csv_row(&t);
        assert!(row.ends_with("\r\n"));
        assert!(row.contains(",charge,pending,cus_1,inv_1,1001,usd,"), "{row}");
        assert!(row.contains("\"seat, \"\"pro\"\"; =hyperlink(\"\"x\"\")\""), "{row}");
        assert_eq!(field("-1"), "'-1");
        assert_eq!(CSV_HEADER.split(',').count(), row.trim_end().split(',').count() - 1, "one quoted comma inside");
    }
}
