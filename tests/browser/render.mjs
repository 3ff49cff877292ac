//! How long the dashboard's overview takes to render in a real browser (Debian's Chromium driven by
//! playwright-core), for `make bench` (infra/billy-bench/src/dashboard.rs). Signs in once through
//! the page's own form, then loads the overview RENDER_RUNS times, each in a fresh page of the same
//! browser context, and times each from the start of its navigation until the overview is fully
//! rendered: the page marks the overview data-ready="true" once every figure is in it and every
//! chart has finished rendering (functions/dashboard/web/src/dashboard/overview.js). Each load may ask
//! only for the page, its assets, the session and /v1/reports/*.
//!
//! Environment: BASE (http://127.0.0.1:<port>: loopback only), KEY (a tenant's secret API key),
//! CHROMIUM (default /usr/bin/chromium), PLAYWRIGHT_CORE_HOME (default where install.sh puts it),
//! RENDER_RUNS (default 5). Prints one JSON object on stdout and nothing else there; logs go to
//! stderr; exits non-zero, saying why on stderr, when anything fails or a wait runs out.
import { defaultPlaywrightHome, launch, playwrightChromium } from "./browser.mjs";

const WAIT = 30_000; // every wait for the browser or the page is bounded by this (ms)

let browser;

const log = (message) => console.error(`[render] ${message}`);

async function fail(message) {
  console.error(`[render] FAIL: ${message}`);
  await Promise.race([browser?.close().catch(() => {}), new Promise((resolve) => setTimeout(resolve, 5_000))]);
  process.exit(1);
}

/** BASE as an origin, refused unless it is plain http on a loopback address. */
function loopbackBase(value) {
  if (!value) throw new Error("BASE is not set (http://127.0.0.1:<port>)");
  let url;
  try {
    url = new URL(value);
  } catch {
    throw new Error(`BASE is not a URL: ${value}`);
  }
  const loopback = /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(url.hostname) || url.hostname === "[::1]" || url.hostname === "localhost";
  if (url.protocol !== "http:" || !loopback || url.username || url.password || !["", "/"].includes(url.pathname) || url.search || url.hash) {
    throw new Error(`BASE must be http://<loopback address>:<port> and nothing more; refusing ${value}`);
  }
  return url.origin;
}

function runsFrom(value) {
  const runs = Number(value ?? 5);
  if (!Number.isInteger(runs) || runs < 1 || runs > 100) throw new Error(`RENDER_RUNS must be a whole number from 1 to 100, not ${value}`);
  return runs;
}

function percentile(sorted, p) {
  const rank = (p / 100) * (sorted.length - 1);
  const [lo, hi] = [Math.floor(rank), Math.ceil(rank)];
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo);
}

const round2 = (x) => Math.round(x * 100) / 100;

// In every document of the context, before the page's own scripts: the time (since the start of
// the navigation) at which the overview's root is first marked ready.
function watchReady() {
  new MutationObserver((_, observer) => {
    if (document.querySelector('[data-testid="overview"][data-ready="true"]')) {
      window.__renderedAt = performance.now();
      observer.disconnect();
    }
  }).observe(document, { subtree: true, childList: true, attributes: true, attributeFilter: ["data-ready"] });
}

/**
 * Waits (bounded) for the ready marker; fails fast with the page's message when it shows `refused`
 * instead (an error, or the sign-in form again: the session was not taken).
 */
async function rendered(page, what, refused = '[data-testid="error"], [data-testid="signin-form"]') {
  const outcome = await page
    .waitForFunction(
      (sel) => (window.__renderedAt !== undefined ? "ready" : document.querySelector(sel) ? "refused" : false),
      refused,
      { timeout: WAIT, polling: 50 },
    )
    .then((h) => h.jsonValue())
    .catch(() => "timeout");
  if (outcome === "ready") return page.evaluate(() => window.__renderedAt);
  const shown = ((await page.textContent('[data-testid="view"], body', { timeout: 2_000 }).catch(() => "")) ?? "").replace(/\s+/g, " ").trim().slice(0, 300);
  if (outcome === "refused") throw new Error(`${what}: the page shows an error or the sign-in form instead of the overview: "${shown}"`);
  const unmarked = await page.evaluate(() => !document.querySelector('[data-testid="overview"]') && Boolean(document.querySelector('[data-testid="kpis"]'))).catch(() => false);
  const hint = unmarked ? " (the served bundle has no readiness marker: build billy-local again after infra/local/dashboard-assets.sh)" : "";
  throw new Error(`${what}: the overview was not marked ready (data-ready="true") within ${WAIT / 1000}s${hint}; the page shows "${shown}"`);
}

/** What a rendered overview must hold: four KPI tiles with their values, and a drawn chart in every chart box. */
async function complete(page, what) {
  const seen = await page.evaluate(() => {
    const root = document.querySelector('[data-testid="overview"][data-ready="true"]');
    const tiles = [...(root?.querySelectorAll('[data-testid="kpis"] [data-testid^="kpi-"]') ?? [])];
    const charts = [...(root?.querySelectorAll(".chart") ?? [])];
    return {
      empty: Boolean(root?.querySelector('[data-testid="overview-empty"]')),
      tiles: tiles.length,
      tilesWithValue: tiles.filter((t) => t.dataset.value !== undefined && t.dataset.value !== "" && t.querySelector(".tile-value")?.textContent.trim()).length,
      charts: charts.map((c) => ({ chart: c.dataset.testid, drawn: Boolean(c.querySelector("svg path, svg text")) })),
    };
  });
  if (seen.empty) throw new Error(`${what}: the overview says there is no billing activity: this tenant has no paid invoices`);
  if (seen.tiles !== 4 || seen.tilesWithValue !== 4) throw new Error(`${what}: ${seen.tilesWithValue} of ${seen.tiles} KPI tiles have a value, expected 4 of 4`);
  const undrawn = seen.charts.filter((c) => !c.drawn).map((c) => c.chart);
  if (!seen.charts.length || undrawn.length) throw new Error(`${what}: charts not drawn though marked ready: ${undrawn.join(", ") || "no charts at all"}`);
  return seen.charts.length;
}

/** A page of `context` recording the http(s) requests it makes. */
async function openPage(context) {
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  page.setDefaultNavigationTimeout(WAIT);
  page.requested = [];
  page.on("request", (r) => {
    const url = new URL(r.url());
    if (url.protocol.startsWith("http")) page.requested.push({ origin: url.origin, path: url.pathname, query: url.search, method: r.method() });
  });
  page.errors = [];
  page.on("pageerror", (e) => page.errors.push(e.message));
  return page;
}

let BASE, KEY, RUNS, CHROMIUM, chromium;
try {
  BASE = loopbackBase(process.env.BASE);
  KEY = process.env.KEY;
  if (!KEY) throw new Error("KEY (a tenant's secret API key) is not set");
  RUNS = runsFrom(process.env.RENDER_RUNS);
  CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
  const home = process.env.PLAYWRIGHT_CORE_HOME || defaultPlaywrightHome();
  try {
    chromium = playwrightChromium(home);
  } catch (error) {
    throw new Error(`playwright-core could not be loaded from ${home} (bash infra/local/install.sh browser installs it): ${error.message}`);
  }
} catch (error) {
  await fail(error.message);
}

// A last bound on the whole run, whatever hangs: launching, signing in, and every load.
const overall = (RUNS + 3) * WAIT;
setTimeout(() => fail(`the whole run took longer than ${overall / 1000}s`), overall).unref();

try {
  browser = await launch(chromium, CHROMIUM, { timeout: WAIT });
} catch (error) {
  await fail(`Chromium (${CHROMIUM}) did not start: ${error.message}`);
}

try {
  const version = browser.version();
  log(`Chromium ${version}, ${RUNS} loads of ${BASE}/dashboard#/overview`);
  const context = await browser.newContext({ viewport: { width: 1360, height: 900 } });
  await context.addInitScript(watchReady);

  // Signed in once, as a person would: the form sends the key, the session is an HttpOnly cookie.
  const signin = await openPage(context);
  await signin.goto(`${BASE}/dashboard`);
  await signin.waitForSelector('[data-testid="signin-form"]');
  await signin.fill('[data-testid="api-key"]', KEY);
  await signin.click('[data-testid="sign-in"]');
  await rendered(signin, "after signing in", '[data-testid="error"]');
  await complete(signin, "after signing in");
  if (signin.errors.length) throw new Error(`script errors while signing in: ${signin.errors.join(" | ")}`);
  await signin.close();

  const allowed = (r) =>
    r.origin === BASE &&
    ((r.path === "/dashboard" && r.method === "GET") ||
      r.path === "/dashboard/session" ||
      r.path.startsWith("/dashboard/assets/") ||
      r.path.startsWith("/v1/reports/"));
  const times = [];
  const counts = [];
  const reportCounts = [];
  const requested = new Set();
  let charts = 0;
  for (let run = 1; run <= RUNS; run += 1) {
    const what = `load ${run} of ${RUNS}`;
    const page = await openPage(context);
    await page.goto(`${BASE}/dashboard#/overview`, { waitUntil: "commit" });
    const ms = await rendered(page, what);
    charts = await complete(page, what);
    // Anything the page still asks for after being marked ready is part of the load too.
    await page.waitForLoadState("networkidle", { timeout: WAIT });
    const other = page.requested.filter((r) => !allowed(r));
    if (other.length) throw new Error(`${what}: the overview requested ${other.map((r) => `${r.method} ${r.origin}${r.path}`).join(", ")}`);
    if (!page.requested.some((r) => r.path.startsWith("/v1/reports/"))) throw new Error(`${what}: the overview read no /v1/reports/* (a cached page?)`);
    if (page.errors.length) throw new Error(`${what}: script errors: ${page.errors.join(" | ")}`);
    for (const r of page.requested) requested.add(`${r.method} ${r.path}${r.query}`);
    times.push(round2(ms));
    counts.push(page.requested.length);
    reportCounts.push(page.requested.filter((r) => r.path.startsWith("/v1/reports/")).length);
    log(`${what}: ${ms.toFixed(1)} ms, ${page.requested.length} requests`);
    await page.close();
  }
  await context.close();
  await Promise.race([browser.close(), new Promise((resolve) => setTimeout(resolve, 10_000))]);

  const sorted = [...times].sort((x, y) => x - y);
  const result = {
    runs: RUNS,
    render_ms_p50: round2(percentile(sorted, 50)),
    render_ms_max: sorted[sorted.length - 1],
    render_ms: times,
    requests_per_load: Math.max(...counts),
    report_requests_per_load: Math.max(...reportCounts),
    requested: [...requested].sort(),
    charts,
    chromium: version,
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(0);
} catch (error) {
  await fail(error.message);
}
