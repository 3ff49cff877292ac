//! The dashboard's figures for the bench's tenant (its N paid invoices): the paid count the billing
//! run watches, that the counters count every invoice exactly once, how long the overview's data
//! takes (the five report requests the page makes at once), and — when
//! Chromium and playwright-core are installed (`BENCH_RENDER_SCRIPT`) — how long the overview takes
//! to render in a real browser.

use crate::{Client, percentile, round2};
use serde_json::{Value, json};
use std::time::Instant;

/// The overview's requests, as the page makes them (revenue by day and by month).
const OVERVIEW: [&str; 5] = [
    "/reports/revenue?interval=day&from=2026-01-01&to=2026-01-31",
    "/reports/revenue?interval=month&from=2025-02-01&to=2026-01-31",
    "/reports/invoices",
    "/reports/dunning?from=2025-08&to=2026-01",
    "/reports/renewals?days=30",
];

/// How many of a scope's invoices the dashboard's counters show paid in `currency`: what the billing
/// run watches, read through the counters' own repository on a client of the bench's own (not
/// metered as Billy's).
pub async fn paid_count(
    reports: &billy_aws::reports::DynamoReports,
    scope: &billy_core::tenant::Scope,
    currency: billy_core::money::Currency,
) -> u64 {
    use billy_core::ports::ReportRepository as _;
    use billy_core::report::{Bucket, Counter};
    let paid = Bucket::Status { status: billy_core::invoice::InvoiceStatus::Paid, currency };
    let key = paid.key();
    let (_, within) = key.split_once('#').expect("a bucket key starts with its kind");
    let found = reports.buckets(scope, Bucket::STATUS, within, within).await.expect("the counters read");
    let count =
        found.into_iter().find(|(bucket, _)| *bucket == paid).and_then(|(_, c)| c.get(&Counter::Count).copied());
    count.map_or(0, |c| u64::try_from(c).unwrap_or(0))
}

/// The overview's figures: each invoice counted once, the data time of `loads` overview loads,
/// and the browser's render time when a render script is configured.
pub async fn overview(api: &Client, n: u64, amount: i64, loads: usize) -> Value {
    let (_, revenue) = api.call(reqwest::Method::GET, OVERVIEW[0], None).await;
    let totals = &revenue["currencies"][0]["totals"];
    let n = i64::try_from(n).unwrap_or(i64::MAX);
    assert_eq!(totals["invoices_paid"].as_i64(), Some(n), "every paid invoice counted once: {totals}");
    assert_eq!(totals["collected"].as_i64(), Some(n * amount), "every payment counted once: {totals}");
    let mut times = Vec::with_capacity(loads);
    for _ in 0..loads {
        let started = Instant::now();
        let answers = futures::future::join_all(OVERVIEW.map(|path| api.call(reqwest::Method::GET, path, None))).await;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        assert!(answers.iter().all(|(status, _)| *status == 200), "{answers:?}");
    }
    times.sort_by(f64::total_cmp);
    let mut out = json!({
        "invoices": n, "loads": loads,
        "data_ms_p50": round2(percentile(&times, 50.0)), "data_ms_p99": round2(percentile(&times, 99.0)),
    });
    if let Ok(script) = std::env::var("BENCH_RENDER_SCRIPT")
        && !script.is_empty()
    {
        out["render"] = render(&script, api);
    }
    out
}

/// Runs the render script (`node <script>`) against this stack: it prints one JSON object.
fn render(script: &str, api: &Client) -> Value {
    assert!(api.base.starts_with("http://127.0.0.1:"), "the browser only ever loads loopback");
    let output = std::process::Command::new("node")
        .arg(script)
        .env("BASE", &api.base)
        .env("KEY", &api.key)
        .output()
        .expect("node runs the render script");
    if !output.status.success() {
        eprintln!("[bench] render script failed: {}", String::from_utf8_lossy(&output.stderr));
        return json!({"error": "the render script failed; see the bench log"});
    }
    serde_json::from_slice(&output.stdout).unwrap_or_else(|_| json!({"error": "the render script printed no JSON"}))
}
