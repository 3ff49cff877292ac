//! The operator dashboard and the customer portal in a real browser (Debian's Chromium driven by
//! playwright-core), against a Billy served on loopback by infra/local/browser.sh: what a person
//! sees must be what the API says, the overview must read only the aggregate routes, the key must
//! never reach browser storage, a tenant must never see another's data, and a portal link must
//! show its own customer and nobody else, and nothing once altered or expired.
//!
//! Environment: BASE (http://127.0.0.1:<port>), ADMIN_TOKEN, PLAYWRIGHT_CORE_HOME (a folder whose
//! node_modules holds playwright-core), CHROMIUM (default /usr/bin/chromium), OUT (screenshots).
import { mkdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { launch, playwrightChromium } from "./browser.mjs";
import { Api, seed, until } from "./seed.mjs";

const env = (name, fallback) => {
  const value = process.env[name] ?? fallback;
  if (!value) fail(`${name} is not set (run the test through infra/local/browser.sh)`);
  return value;
};

function fail(message) {
  console.error(`[browser] FAIL: ${message}`);
  process.exit(1);
}

/** JSON with object keys sorted, so two objects compare by content, not by key order. */
function canonical(value) {
  return JSON.stringify(value, (_, v) =>
    v && typeof v === "object" && !Array.isArray(v) ? Object.fromEntries(Object.entries(v).sort(([x], [y]) => (x < y ? -1 : 1))) : v,
  );
}

/** Throws a readable failure when `actual` differs from `expected` (compared as canonical JSON). */
function same(actual, expected, what) {
  const [a, e] = [canonical(actual), canonical(expected)];
  if (a !== e) throw new Error(`${what}: the page shows ${a}, expected ${e}`);
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

const BASE = env("BASE");
const ADMIN = env("ADMIN_TOKEN");
const OUT = env("OUT", "target/browser");
const CHROMIUM = env("CHROMIUM", "/usr/bin/chromium");
const chromium = playwrightChromium(env("PLAYWRIGHT_CORE_HOME"));
const WAIT = 20_000; // every wait for the page is bounded by this (ms)

const api = new Api(BASE);
let browser;
let current = null; // the page a failure is screenshot from
const pageErrors = [];

async function step(name, body) {
  const started = Date.now();
  try {
    await body();
    console.log(`[browser] ok   ${name} (${((Date.now() - started) / 1000).toFixed(1)}s)`);
  } catch (error) {
    if (current) await current.screenshot({ path: join(OUT, "failure.png"), fullPage: true }).catch(() => {});
    console.error(`[browser] FAIL ${name}: ${error.message}`);
    if (current) console.error(`[browser] the page at the failure: ${join(OUT, "failure.png")} (${current.url()})`);
    await browser?.close().catch(() => {});
    process.exit(1);
  }
}

/** A new page of `context` (a context holds its own cookies), recording what it requests and any script error. */
async function openPage(context) {
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT);
  page.requested = [];
  page.on("request", (r) => {
    const url = new URL(r.url());
    if (url.protocol.startsWith("http")) page.requested.push({ origin: url.origin, path: url.pathname, method: r.method() });
  });
  page.on("pageerror", (e) => pageErrors.push(`${page.url()}: ${e.message}`));
  current = page;
  return page;
}

/** Waits (bounded) until the texts of `selector` are `expected`, in order; fails showing both. */
async function shows(page, selector, expected, what) {
  try {
    await page.waitForFunction(
      ([sel, want]) => JSON.stringify([...document.querySelectorAll(sel)].map((e) => e.textContent)) === JSON.stringify(want),
      [selector, expected],
    );
  } catch {
    same(await page.$$eval(selector, (els) => els.map((e) => e.textContent)), expected, what);
  }
}

/** `data-value` of every element whose data-testid starts with `prefix`, by data-testid. */
async function figures(page, prefix) {
  return page.$$eval(`[data-testid^="${prefix}"][data-value]`, (els) =>
    Object.fromEntries(els.map((e) => [e.dataset.testid, Number(e.dataset.value)])),
  );
}

async function screenshot(page, name) {
  await page.screenshot({ path: join(OUT, name), fullPage: true });
}

/** Signs in on the sign-in form and waits for the overview. */
async function signIn(page, key) {
  await page.goto(`${BASE}/dashboard`);
  await page.waitForSelector('[data-testid="signin-form"]');
  await page.fill('[data-testid="api-key"]', key);
  await page.click('[data-testid="sign-in"]');
  await page.waitForSelector('[data-testid="kpis"], [data-testid="overview-empty"]');
}

/** The header names the tenant the session is for (by name when the session gives one). */
async function showsTenant(page, tenant) {
  const session = await page.evaluate(async () => (await fetch("/dashboard/session", { credentials: "same-origin" })).json());
  same(session.tenant, tenant.id, "the session's tenant");
  same(await page.textContent('[data-testid="tenant-name"]'), session.tenant_name ?? session.tenant, "the tenant in the header");
}

async function modeBandSaysTest(page) {
  const band = (await page.textContent('[data-testid="mode-band"]')) ?? "";
  check(band.includes("TEST MODE"), `the page is not marked as test mode (band: "${band}")`);
}

await mkdir(OUT, { recursive: true });
let world;

await step("seed two tenants through the API", async () => {
  world = await seed(api, ADMIN);
});

const { a, b, ada, grace, paul, bea, invoices, expected } = world;
const usd = (report) => report.currencies.find((c) => c.currency === "usd");

let reports;
await step("the reports reflect what was seeded", async () => {
  const list = await api.get("/v1/invoices?limit=100", a.key);
  const byStatus = {};
  for (const inv of list.data) {
    // A draft's total is still changing: the report gives drafts a count and no amount.
    byStatus[inv.status] ??= { count: 0, amount: inv.status === "draft" ? null : 0 };
    byStatus[inv.status].count += 1;
    if (inv.status !== "draft") byStatus[inv.status].amount += inv.total;
  }
  reports = await until("tenant A's /v1/reports/* show the seeded payments, refund, payout, failure and renewal", async () => {
    const [revenue, status, dunning, renewals] = await Promise.all([
      api.get("/v1/reports/revenue", a.key),
      api.get("/v1/reports/invoices", a.key),
      api.get("/v1/reports/dunning", a.key),
      api.get("/v1/reports/renewals?days=30", a.key),
    ]);
    const t = usd(revenue)?.totals ?? {};
    const seen = {
      collected: t.collected,
      refunded: t.refunded,
      paidOut: t.paid_out,
      net: t.net,
      firstAttemptFailed: usd(dunning)?.totals.first_attempt_failed,
      renewals: usd(renewals)?.count,
      statuses: Object.fromEntries((usd(status)?.statuses ?? []).map((s) => [s.status, { count: s.count, amount: s.amount }])),
    };
    const ok =
      seen.collected === expected.collected &&
      seen.refunded === expected.refunded &&
      seen.paidOut === expected.paidOut &&
      seen.net === expected.collected - expected.refunded - expected.paidOut &&
      seen.firstAttemptFailed === expected.firstAttemptFailed &&
      seen.renewals >= 1 &&
      JSON.stringify(Object.entries(seen.statuses).sort()) === JSON.stringify(Object.entries(byStatus).sort());
    return ok ? { revenue, status, dunning, renewals } : { ok: false, seen: { seen, expected, byStatus } };
  }, 90);
});

browser = await launch(chromium, CHROMIUM);
const operator = await browser.newContext({ acceptDownloads: true, viewport: { width: 1360, height: 900 } });
const page = await openPage(operator);

await step("sign in as tenant A; the key is kept nowhere in the browser", async () => {
  page.requested.length = 0;
  await signIn(page, a.key);
  await showsTenant(page, a);
  await modeBandSaysTest(page);
  const stored = await page.evaluate(() => ({
    local: JSON.stringify({ ...localStorage }),
    session: JSON.stringify({ ...sessionStorage }),
    cookie: document.cookie,
    field: document.querySelector('[data-testid="api-key"]')?.value ?? "",
  }));
  for (const [where, text] of Object.entries(stored)) check(!text.includes(a.key), `the API key is in ${where}`);
  check(!(await page.content()).includes(a.key), "the API key is in the page");
  const cookies = await operator.cookies(BASE);
  const sessionCookie = cookies.find((c) => c.name === "billy_session");
  check(sessionCookie, `no billy_session cookie was set (cookies: ${cookies.map((c) => c.name).join(", ")})`);
  check(sessionCookie.httpOnly, "the session cookie is readable by scripts (not HttpOnly)");
  check(sessionCookie.sameSite === "Strict", `the session cookie is SameSite=${sessionCookie.sameSite}, not Strict`);
  check(!sessionCookie.value.includes(a.key), "the session cookie carries the API key");
});

await step("the overview shows the API's figures and reads only the aggregate routes", async () => {
  await page.waitForSelector('[data-testid="chart-revenue-day"] svg');
  await page.waitForSelector('[data-testid="chart-dunning"] svg');
  await page.waitForLoadState("networkidle");
  const allowed = (r) =>
    r.origin === BASE &&
    (r.path === "/dashboard" || r.path === "/dashboard/session" || r.path.startsWith("/dashboard/assets/") || r.path.startsWith("/v1/reports/"));
  const other = page.requested.filter((r) => !allowed(r));
  check(!other.length, `the overview requested more than the reports: ${other.map((r) => `${r.method} ${r.origin}${r.path}`).join(", ")}`);
  check(page.requested.some((r) => r.path === "/v1/reports/revenue"), "the overview never read /v1/reports/revenue");

  const totals = usd(reports.revenue).totals;
  same(await figures(page, "kpi-"), {
    "kpi-collected": totals.collected,
    "kpi-refunded": totals.refunded,
    "kpi-paid_out": totals.paid_out,
    "kpi-net": totals.net,
  }, "the KPI tiles");
  const range = await page.$eval('[data-testid="kpis"]', (e) => [e.dataset.from, e.dataset.to]);
  same(range, [reports.revenue.from, reports.revenue.to], "the KPI range");

  const shownStatuses = await page.$$eval('[data-testid^="status-"]', (els) =>
    els.map((e) => [e.dataset.testid.slice("status-".length), Number(e.dataset.count), e.dataset.amount === undefined ? null : Number(e.dataset.amount)]).sort(),
  );
  same(shownStatuses, usd(reports.status).statuses.map((s) => [s.status, s.count, s.amount ?? null]).sort(), "invoices by status");

  const d = usd(reports.dunning).totals;
  same(await figures(page, "dunning-"), Object.fromEntries(Object.entries(d).map(([k, v]) => [`dunning-${k}`, v])), "the dunning figures");
  same(await figures(page, "renewals-"), {
    "renewals-count": usd(reports.renewals).count,
    "renewals-amount": usd(reports.renewals).amount,
  }, "the renewals");
  await screenshot(page, "overview.png");
});

await step("a customer page shows the month so far as the API's summary says", async () => {
  await page.click('[data-testid="nav-customers"]');
  await page.click(`[data-testid="customer-link"]:text-is("${ada.name}")`);
  await page.waitForSelector('[data-testid="summary-charged"], [data-testid="summary-empty"]');
  same(await page.textContent('[data-testid="customer-name"]'), ada.name, "the customer's name");
  const summary = await api.get(`/v1/customers/${ada.id}/summary`, a.key);
  const s = usd(summary);
  check(s && s.charged > 0, `the API's summary of ${ada.id} shows nothing charged: ${JSON.stringify(summary)}`);
  const shown = await page.$eval('[data-testid="summary"][data-currency="usd"]', (block) =>
    Object.fromEntries([...block.querySelectorAll("[data-value]")].map((e) => [e.dataset.testid, Number(e.dataset.value)])),
  );
  same(shown, {
    "summary-charged": s.charged,
    "summary-paid_out": s.paid_out,
    "summary-commission": s.commission,
    "summary-net": s.net,
  }, "the month so far");
  await page.waitForSelector('[data-testid="summary-chart-usd"] svg');
  await page.waitForSelector('[data-testid="customer-invoices"]');
  const invoiceIds = await page.$$eval('[data-testid="customer-invoices"] [data-testid="invoice-id"]', (els) => els.map((e) => e.textContent));
  for (const inv of [invoices.refunded, invoices.second, invoices.firstBill]) check(invoiceIds.includes(inv.id), `invoice ${inv.id} is not on the customer's page`);
  await page.waitForSelector('[data-testid="audit-trail"] tbody tr');
  await page.waitForSelector('[data-testid="balance-lines"] tbody tr');
  await modeBandSaysTest(page);
  await screenshot(page, "customer.png");
});

await step("the transactions list matches the API, filters as it does, and exports CSV", async () => {
  await page.click('[data-testid="nav-transactions"]');
  await page.waitForSelector('[data-testid="transactions-table"]');
  const ids = '[data-testid="transactions-table"] [data-testid="transaction-id"]';
  const firstPage = await api.get("/v1/transactions?limit=25", a.key);
  await shows(page, ids, firstPage.data.map((t) => t.id), "the transactions");
  await modeBandSaysTest(page);
  await screenshot(page, "transactions.png");

  await page.selectOption('[data-testid="transaction-filters"] select[name="type"]', "refund");
  await page.click('[data-testid="transaction-filters"] button[type="submit"]');
  await page.waitForURL(/type=refund/);
  const refunds = await api.get("/v1/transactions?type=refund&limit=25", a.key);
  check(refunds.data.length === 1, `the API lists ${refunds.data.length} refunds, expected 1`);
  await shows(page, ids, refunds.data.map((t) => t.id), "the refunds");

  const [download] = await Promise.all([page.waitForEvent("download"), page.click('[data-testid="export-csv"]')]);
  const saved = join(OUT, "transactions.csv");
  await download.saveAs(saved);
  const csv = await readFile(saved, "utf8");
  const fromApi = await api.call("GET", "/v1/transactions?type=refund", { key: a.key, accept: "text/csv" });
  check(fromApi.status === 200, `the API's CSV answered ${fromApi.status}`);
  same(csv, fromApi.text, "the exported CSV");
  check(csv.includes(refunds.data[0].id), "the CSV does not list the refund");
});

await step("sign out ends the session", async () => {
  await page.click('[data-testid="sign-out"]');
  await page.waitForSelector('[data-testid="signin-form"]');
  const status = await page.evaluate(async () => (await fetch("/dashboard/session", { credentials: "same-origin" })).status);
  same(status, 401, "GET /dashboard/session after signing out");
});

await step("tenant B sees none of tenant A's customers", async () => {
  await signIn(page, b.key);
  await showsTenant(page, b);
  const secrets = [ada.name, ada.id, grace.name, grace.id, paul.name, paul.id, a.name, ...Object.values(invoices).filter((i) => i !== invoices.beaInvoice).map((i) => i.id)];
  const visit = async (hash, ready, asked = []) => {
    // From a blank page, so what is waited for is never the previous page's.
    await page.goto("about:blank");
    await page.goto(`${BASE}/dashboard${hash}`);
    await page.waitForSelector(ready);
    await page.waitForLoadState("networkidle");
    const html = await page.content();
    const leaked = secrets.filter((s) => !asked.includes(s) && html.includes(s));
    check(!leaked.length, `tenant B's ${hash} shows tenant A's ${leaked.join(", ")}`);
  };
  await visit("#/overview", '[data-testid="kpis"]');
  await visit("#/customers", '[data-testid="customers-table"]');
  const names = await page.$$eval('[data-testid="customer-link"]', (els) => els.map((e) => e.textContent));
  same(names, [bea.name], "tenant B's customers");
  await visit(`#/customers/${bea.id}`, '[data-testid="summary-charged"], [data-testid="summary-empty"]');
  await visit("#/invoices", '[data-testid="invoices-table"]');
  await visit("#/transactions", '[data-testid="transactions-table"]');
  // Another tenant's customer, asked for by id, is not found (its id is on the page only as asked).
  await visit(`#/customers/${ada.id}`, '[data-testid="error"]', [ada.id]);
  same(await page.getAttribute('[data-testid="error"]', "data-code"), "resource_missing", "the error for another tenant's customer");
});

await step("a portal link shows its customer, their month and invoices, and no one else", async () => {
  const session = await api.post(`/v1/customers/${ada.id}/portal_sessions`, a.key, {});
  check(session.customer === ada.id, `the portal session is for ${session.customer}`);
  const link = new URL(session.url);
  check(link.origin === BASE, `the portal link ${session.url} is not on Billy's origin ${BASE}`);
  const visitor = await browser.newContext({ viewport: { width: 1200, height: 900 } });
  const portal = await openPage(visitor);
  await portal.goto(session.url);
  check(new URL(portal.url()).pathname === "/portal", `the link did not lead to /portal (at ${portal.url()})`);
  await portal.waitForSelector('[data-testid="portal-invoices-table"]');
  await portal.waitForSelector('[data-testid="portal-summary"], [data-testid="portal"] .empty');
  same(await portal.textContent('[data-testid="portal-name"]'), ada.name, "the portal's customer");
  await modeBandSaysTest(portal);
  const shownIds = await portal.$$eval('[data-testid="portal-invoices-table"] [data-testid="invoice-id"]', (els) => els.map((e) => e.textContent));
  for (const inv of [invoices.refunded, invoices.second, invoices.firstBill]) check(shownIds.includes(inv.id), `the portal does not list ${inv.id}`);
  const html = await portal.content();
  const leaked = [grace.name, grace.id, paul.name, paul.id, bea.name, bea.id, invoices.declined.id, invoices.payout.id, invoices.beaInvoice.id].filter((s) => html.includes(s));
  check(!leaked.length, `the portal shows another customer's ${leaked.join(", ")}`);
  const theirs = await portal.evaluate(async () => (await (await fetch("/portal/api/invoices?limit=100")).json()).data.map((i) => i.customer));
  check(theirs.length > 0 && theirs.every((c) => c === ada.id), `/portal/api/invoices answered invoices of ${[...new Set(theirs)].join(", ")}`);
  const strayed = portal.requested.filter((r) => !(r.origin === BASE && (r.path.startsWith("/portal") || r.path.startsWith("/dashboard/assets/"))));
  check(!strayed.length, `the portal requested ${strayed.map((r) => r.path).join(", ")}`);
  const summary = usd(await api.get(`/v1/customers/${ada.id}/summary`, a.key));
  same(await figures(portal, "portal-charged"), { "portal-charged": summary.charged }, "the portal's month so far");
  await screenshot(portal, "portal.png");
  await visitor.close();
  current = page;
});

await step("an altered or expired portal link is refused", async () => {
  const refusal = "This link has expired or is not valid";
  const visitor = await browser.newContext();
  const portal = await openPage(visitor);
  const { url } = await api.post(`/v1/customers/${ada.id}/portal_sessions`, a.key, {});
  // One character of the token changed (in the middle, where every bit counts).
  const token = url.slice(url.lastIndexOf("/") + 1);
  const i = Math.floor(token.length / 2);
  const altered = `${url.slice(0, url.lastIndexOf("/") + 1)}${token.slice(0, i)}${token[i] === "A" ? "B" : "A"}${token.slice(i + 1)}`;
  let response = await portal.goto(altered);
  same(response.status(), 403, "an altered link");
  check((await portal.content()).includes(refusal), `an altered link's page does not say "${refusal}"`);
  await screenshot(portal, "portal-refused.png");

  const short = await api.post(`/v1/customers/${ada.id}/portal_sessions`, a.key, { expires_in: 5 });
  const wait = Date.parse(short.expires_at) + 1_500 - Date.now();
  check(wait < 15_000, `a 5-second link expires at ${short.expires_at}`);
  await new Promise((resolve) => setTimeout(resolve, Math.max(wait, 0)));
  response = await portal.goto(short.url);
  same(response.status(), 403, "an expired link");
  check((await portal.content()).includes(refusal), `an expired link's page does not say "${refusal}"`);

  // Without a portal cookie, the portal page itself shows nothing of anyone.
  await portal.goto(`${BASE}/portal`);
  await portal.waitForSelector('[data-testid="portal-refused"]');
  check(!(await portal.content()).includes(ada.name), "the portal without a session shows the customer");
  await visitor.close();
  current = page;
});

await step("no script error on any page", async () => {
  check(!pageErrors.length, `script errors: ${pageErrors.join(" | ")}`);
});

await browser.close();
console.log(`[browser] passed; screenshots in ${OUT}`);
