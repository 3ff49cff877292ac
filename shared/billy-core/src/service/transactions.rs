//! The transactions ledger: filtered, paginated lists, CSV inline for small results, and export
//! jobs that stream any number of rows into a file.

use crate::audit::Context;
use crate::error::{DomainError, DomainResult};
use crate::ids::{Id, IdKind};
use crate::ledger::{CSV_HEADER, Export, ExportFilter, ExportStatus, csv_row, validate_filter};
use crate::page::{Page, PageRequest};
use crate::ports::{FileStore, Ports, TransactionFilter, Write};
use crate::tenant::Scope;
use crate::transaction::Transaction;

/// At most this many rows are answered inline as CSV; more take an export job.
pub const MAX_INLINE_ROWS: usize = 1000;
/// Rows read per page while exporting.
pub const EXPORT_PAGE: usize = 100;
/// How long an export's download link works.
pub const LINK_VALID_FOR: std::time::Duration = std::time::Duration::from_secs(15 * 60);

pub async fn list_transactions(
    p: &Ports<'_>,
    ctx: &Context,
    filter: &TransactionFilter,
    page: &PageRequest,
) -> DomainResult<Page<Transaction>> {
    validate_filter(filter)?;
    p.transactions.list(&ctx.scope, filter, page).await
}

/// Every page of a filtered ledger, in order, handed to `each` as it is read.
async fn each_page<F>(
    p: &Ports<'_>,
    scope: &Scope,
    filter: &TransactionFilter,
    page_size: usize,
    mut each: F,
) -> DomainResult<()>
where
    F: FnMut(Vec<Transaction>) -> std::ops::ControlFlow<()>,
{
    let mut page = PageRequest { limit: page_size, starting_after: None };
    loop {
        let found = p.transactions.list(scope, filter, &page).await?;
        page.starting_after = found.next_cursor.as_deref().map(|c| Id::from_trusted(c.to_owned()));
        let more = found.has_more && page.starting_after.is_some();
        if each(found.data).is_break() || !more {
            return Ok(());
        }
    }
}

/// A small ledger as CSV text; more than `MAX_INLINE_ROWS` rows is a 400 that points at exports.
pub async fn csv_inline(p: &Ports<'_>, ctx: &Context, filter: &TransactionFilter) -> DomainResult<String> {
    validate_filter(filter)?;
    let mut out = String::from(CSV_HEADER);
    let mut rows = 0;
    each_page(p, &ctx.scope, filter, EXPORT_PAGE, |page| {
        rows += page.len();
        if rows > MAX_INLINE_ROWS {
            return std::ops::ControlFlow::Break(());
        }
        out.extend(page.iter().map(csv_row));
        std::ops::ControlFlow::Continue(())
    })
    .await?;
    if rows > MAX_INLINE_ROWS {
        return Err(DomainError::invalid(
            "export_too_large",
            format!("more than {MAX_INLINE_ROWS} rows: create an export job (POST /v1/exports) instead"),
            None,
        ));
    }
    Ok(out)
}

/// Starts an export job; its `export.created` announcement (from the outbox) sets it running.
pub async fn create_export(p: &Ports<'_>, ctx: &Context, filter: TransactionFilter) -> DomainResult<Export> {
    validate_filter(&filter)?;
    let now = p.clock.now();
    let export = Export {
        id: ctx.new_id(p.ids, IdKind::Export),
        filter: ExportFilter::from(&filter),
        status: ExportStatus::Pending,
        rows: 0,
        bytes: 0,
        file: None,
        failure: None,
        created: now,
        completed: None,
        livemode: ctx.scope.livemode(),
        version: 1,
    };
    let event = ctx.snapshot(p.ids, now, "export.created", &export);
    let id = export.id.clone();
    let writes = vec![Write::Export { export: export.clone(), expected: None }];
    super::create_once(p, ctx, export, writes, vec![event], || p.exports.get(&ctx.scope, &id)).await
}

pub async fn get_export(p: &Ports<'_>, ctx: &Context, raw: &str) -> DomainResult<Export> {
    let id = Id::parse(IdKind::Export, raw, "")?;
    p.exports.get(&ctx.scope, &id).await?.ok_or_else(|| DomainError::not_found("export", raw))
}

/// The short-lived download link of a finished export.
pub async fn export_link(files: &dyn FileStore, export: &Export) -> DomainResult<Option<String>> {
    match &export.file {
        Some(key) if export.status == ExportStatus::Succeeded => files.link(key, LINK_VALID_FOR).await.map(Some),
        _ => Ok(None),
    }
}

/// Runs an export: pages of the ledger are written to the file as they are read, so memory holds
/// one page and one file part, however many rows there are. Done twice (a redelivery), the second
/// run finds it finished and does nothing.
pub async fn run_export(p: &Ports<'_>, files: &dyn FileStore, scope: &Scope, id: &Id) -> DomainResult<Export> {
    let mut export = p.exports.get(scope, id).await?.ok_or_else(|| DomainError::not_found("export", id.as_str()))?;
    if export.status != ExportStatus::Pending {
        return Ok(export);
    }
    let key = format!("exports/{}/{}/{}.csv", scope.tenant, scope.mode.as_str(), export.id);
    let mut writer = files.create(&key, "text/csv").await?;
    let filter = TransactionFilter::from(&export.filter);
    let mut rows = 0u64;
    let mut failed: Option<DomainError> = writer.write(CSV_HEADER.as_bytes()).await.err();
    let mut page = PageRequest { limit: EXPORT_PAGE, starting_after: None };
    // Each page is written before the next is read.
    while failed.is_none() {
        let found = match p.transactions.list(scope, &filter, &page).await {
            Ok(found) => found,
            Err(e) => {
                failed = Some(e);
                break;
            }
        };
        let text: String = found.data.iter().map(csv_row).collect();
        rows += found.data.len() as u64;
        if let Err(e) = writer.write(text.as_bytes()).await {
            failed = Some(e);
        }
        page.starting_after = found.next_cursor.as_deref().map(|c| Id::from_trusted(c.to_owned()));
        if !found.has_more || page.starting_after.is_none() {
            break;
        }
    }
    if let Some(e) = failed {
        writer.abort().await;
        return Err(e);
    }
    let bytes = writer.finish().await?;
    let expected = export.version;
    let now = p.clock.now();
    export.finish(key, rows, bytes, now)?;
    let ctx = Context::new(scope.clone(), crate::audit::Actor::System { function: "export-transactions".into() }, None);
    let event = ctx.snapshot(p.ids, now, "export.succeeded", &export);
    match p
        .unit
        .commit(scope, vec![Write::Export { export: export.clone(), expected: Some(expected) }], vec![event])
        .await
    {
        Ok(()) => Ok(export),
        // Another run finished it first.
        Err(DomainError::Conflict { .. }) => {
            p.exports.get(scope, id).await?.ok_or_else(|| DomainError::not_found("export", id.as_str()))
        }
        Err(e) => Err(e),
    }
}
