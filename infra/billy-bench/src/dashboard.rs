//! The dashboard's figures for the bench's tenant (its N paid invoices): how long the report
//! counters take to catch up with the billing run, that they count every invoice exactly once, how
//! long the overview's data takes (the five report requests the page makes at once), and — when
//! Chromium and playwright-core are installed (`BENCH_RENDER_SCRIPT`) — how long the overview takes
//! to render in a real browser.

use crate::{Client, percentile, round2};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The overview's requests, as the page makes them (revenue by day and by month).
const OVERVIEW: [&str; 5] = [
    "/reports/revenue?interval=day&from=2026-01-01&to=2026-01-31",
    "/reports/revenue?interval=month&from=2025-02-01&to=2026-01-31",
    "/reports/invoices",
    "/reports/dunning?from=2025-08&to=2026-01",
    "/reports/renewals?days=30",
];

fn paid(report: &Value) -> i64 {
    report["currencies"][0]["statuses"]
        .as_array()
        .and_then(|s| s.iter().find(|r| r["status"] == "paid"))
        .and_then(|r| r["count"].as_i64())
        .unwrap_or(0)
}

/// Waits (bounded) until the counters show all `n` invoices paid; the seconds it took.
pub async fn catch_up(api: &Client, n: u64, timeout: Duration) -> f64 {
    let started = Instant::now();
    loop {
        let (status, report) = api.call(reqwest::Method::GET, "/reports/invoices", None).await;
        assert_eq!(status, 200, "{report}");
        let counted = paid(&report);
        if counted == i64::try_from(n).unwrap_or(i64::MAX) {
            return started.elapsed().as_secs_f64();
        }
        assert!(started.elapsed() < timeout, "the report counters never caught up: {counted}/{n} paid");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
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
