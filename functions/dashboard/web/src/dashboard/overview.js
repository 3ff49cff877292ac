//! The overview: money collected, refunded and paid out over a range, per day and per month;
//! invoices by status; the dunning funnel; upcoming renewals. It reads only the aggregate routes
//! (/v1/reports/*), never lists of invoices or transactions.
import { get } from "../api.js";
import { bars, countsOverTime, finished, funnel, moneyOverTime, palette } from "../charts.js";
import { badge, h, mount, section, table } from "../dom.js";
import { day, money, periodLabel, words } from "../format.js";
import { countTile, errorBox, loading, moneyTile } from "../ui.js";
import { INVOICE_STATUSES } from "./invoices.js";

const RENEWAL_DAYS = 30;

export async function renderOverview(page, { params, navigate }) {
  const range = h("div.toolbar", {});
  // Marked data-ready="true" once every figure is in it and every chart has finished rendering.
  const body = h("div", { "data-testid": "overview" });
  mount(page, h("div.page-head", {}, h("h1", {}, "Overview"), range), body);
  mount(body, loading());

  // The range is the API's default unless the reader chose one, so the figures are the API's own.
  const chosen = { from: params.from, to: params.to };
  let reports;
  try {
    const [daily, monthly, invoices, dunning, renewals] = await Promise.all([
      get("/v1/reports/revenue", { interval: "day", ...chosen }),
      get("/v1/reports/revenue", { interval: "month" }),
      get("/v1/reports/invoices"),
      get("/v1/reports/dunning"),
      get("/v1/reports/renewals", { days: RENEWAL_DAYS }),
    ]);
    reports = { daily, monthly, invoices, dunning, renewals };
  } catch (error) {
    // The range stays editable: a range the API refuses (from after to, say) can be corrected.
    mount(range, rangeForm(chosen, params, navigate));
    mount(body, errorBox(error, "The reports could not be read"));
    return;
  }

  const currencies = [
    ...new Set(
      [reports.daily, reports.monthly, reports.invoices, reports.dunning, reports.renewals].flatMap((r) =>
        r.currencies.map((c) => c.currency),
      ),
    ),
  ].sort();
  const currency = currencies.includes(params.currency) ? params.currency : currencies.includes("usd") ? "usd" : currencies[0];

  mount(range, rangeForm(reports.daily, params, navigate), currencyPicker(currencies, currency, params, navigate));
  if (!currency) {
    mount(body, h("p.empty", { "data-testid": "overview-empty" }, "No billing activity yet. Figures appear here once invoices are charged."));
    body.dataset.ready = "true";
    return;
  }

  const of = (report) => report.currencies.find((c) => c.currency === currency);
  const daily = of(reports.daily);
  const monthly = of(reports.monthly);

  const dayChart = h("div.chart", { "data-testid": "chart-revenue-day" });
  const monthChart = h("div.chart", { "data-testid": "chart-revenue-month" });
  const statusChart = h("div.chart.short", { "data-testid": "chart-invoices" });
  const funnelChart = h("div.chart.short", { "data-testid": "chart-dunning" });
  const renewalChart = h("div.chart.short", { "data-testid": "chart-renewals" });

  mount(
    body,
    kpis(daily, currency, reports.daily),
    section(`Revenue per day · ${day(reports.daily.from)} to ${day(reports.daily.to)}`, dayChart),
    section(`Revenue per month · ${periodLabel(reports.monthly.from.slice(0, 7))} to ${periodLabel(reports.monthly.to.slice(0, 7))}`, monthChart),
    h(
      "div.columns",
      {},
      section("Invoices by status (now)", statusChart, invoicesTable(of(reports.invoices), currency)),
      section(`Dunning · ${periodLabel(reports.dunning.from)} to ${periodLabel(reports.dunning.to)}`, funnelChart, dunningFigures(of(reports.dunning), currency)),
    ),
    section(`Renewals in the next ${RENEWAL_DAYS} days`, renewalFigures(of(reports.renewals), currency), renewalChart),
  );

  const revenueSeries = [
    { name: "Collected", key: "collected", color: palette.collected },
    { name: "Refunded", key: "refunded", color: palette.refunded },
    { name: "Paid out", key: "paid_out", color: palette.paidOut },
    { name: "Net", key: "net", color: palette.net, type: "line" },
  ];
  const charts = [
    moneyOverTime(dayChart, { rows: daily?.series ?? [], currency, series: revenueSeries }),
    moneyOverTime(monthChart, { rows: monthly?.series ?? [], currency, series: revenueSeries }),
  ];
  const statuses = byLifecycle(of(reports.invoices));
  charts.push(bars(statusChart, { items: statuses.map((s) => ({ label: words(s.status), value: s.count })), valueFormatter: (v) => `${v} invoices` }));
  const d = of(reports.dunning)?.totals;
  charts.push(funnel(funnelChart, {
    stages: [
      { label: "First attempt failed", value: d?.first_attempt_failed ?? 0, color: palette.refunded },
      { label: "Recovered", value: d?.recovered ?? 0, color: palette.collected },
      { label: "Failed for good", value: d?.failed_for_good ?? 0, color: "#9b2c2c" },
    ],
  }));
  const r = of(reports.renewals);
  charts.push(countsOverTime(renewalChart, {
    periods: (r?.series ?? []).map((s) => s.period),
    series: [{ name: "Renewals", data: (r?.series ?? []).map((s) => s.count) }],
    type: "bar",
  }));
  await Promise.all(charts.map(finished));
  body.dataset.ready = "true";
}

/** The day range of the revenue figures; `shown` is the range on the page ({from, to}). */
function rangeForm(shown, params, navigate) {
  const from = h("input", { type: "date", name: "from", value: shown.from, "data-testid": "range-from" });
  const to = h("input", { type: "date", name: "to", value: shown.to, "data-testid": "range-to" });
  return h(
    "form.range",
    {
      onSubmit: (event) => {
        event.preventDefault();
        navigate("/overview", { ...params, from: from.value, to: to.value });
      },
    },
    h("label.field.inline", {}, h("span", {}, "From"), from),
    h("label.field.inline", {}, h("span", {}, "To"), to),
    h("button", { type: "submit" }, "Show"),
    params.from || params.to
      ? h("button.secondary", { type: "button", onClick: () => navigate("/overview", { currency: params.currency }) }, "Last 30 days")
      : null,
  );
}

function currencyPicker(currencies, currency, params, navigate) {
  if (currencies.length < 2) return null;
  const select = h(
    "select",
    { "data-testid": "currency", onChange: () => navigate("/overview", { ...params, currency: select.value }) },
    currencies.map((c) => h("option", { value: c }, c.toUpperCase())),
  );
  select.value = currency;
  return h("label.field.inline", {}, h("span", {}, "Currency"), select);
}

function kpis(daily, currency, report) {
  const t = daily?.totals ?? { collected: 0, refunded: 0, paid_out: 0, charged_back: 0, net: 0, invoices_paid: 0, refunds: 0, payouts: 0 };
  const n = (count, one, many) => `${count} ${count === 1 ? one : many}`;
  return h(
    "div.tiles",
    { "data-testid": "kpis", "data-from": report.from, "data-to": report.to },
    moneyTile({ testid: "kpi-collected", label: "Collected", amount: t.collected, currency, note: n(t.invoices_paid, "invoice paid", "invoices paid"), tone: "good" }),
    moneyTile({ testid: "kpi-refunded", label: "Refunded", amount: t.refunded, currency, note: n(t.refunds, "refund", "refunds"), tone: "warn" }),
    moneyTile({ testid: "kpi-paid_out", label: "Paid out", amount: t.paid_out, currency, note: n(t.payouts, "payout", "payouts") }),
    moneyTile({ testid: "kpi-net", label: "Net", amount: t.net, currency, note: "collected − refunded − paid out − charged back", tone: "strong" }),
  );
}

/** The report's statuses in the order an invoice goes through them. */
function byLifecycle(byStatus) {
  return [...(byStatus?.statuses ?? [])].sort((x, y) => INVOICE_STATUSES.indexOf(x.status) - INVOICE_STATUSES.indexOf(y.status));
}

function invoicesTable(byStatus, currency) {
  const rows = byLifecycle(byStatus);
  return table(
    [
      { label: "Status", cell: (s) => h("a", { href: `#/invoices?status=${encodeURIComponent(s.status)}` }, badge(s.status)) },
      { label: "Invoices", class: "num", cell: (s) => h("span", { "data-testid": `status-${s.status}`, "data-count": s.count, "data-amount": s.amount }, String(s.count)) },
      { label: "Amount", class: "num", cell: (s) => money(s.amount, currency) },
    ],
    rows,
    { testid: "invoices-by-status", empty: "No invoices." },
  );
}

function dunningFigures(dunning, currency) {
  const t = dunning?.totals ?? {};
  const figure = (key, label) => countTile({ testid: `dunning-${key}`, label, count: t[key] ?? 0 });
  const amount = (key, label) => moneyTile({ testid: `dunning-${key}`, label, amount: t[key] ?? 0, currency });
  return h(
    "div.tiles.small",
    { "data-testid": "dunning" },
    figure("first_attempt_failed", "First attempt failed"),
    figure("recovered", "Recovered"),
    figure("failed_for_good", "Failed for good"),
    amount("amount_failed", "Amount failed"),
    amount("amount_recovered", "Amount recovered"),
    amount("amount_lost", "Amount lost"),
  );
}

function renewalFigures(renewals, currency) {
  return h(
    "div.tiles.small",
    { "data-testid": "renewals" },
    countTile({ testid: "renewals-count", label: "Subscriptions renewing", count: renewals?.count ?? 0 }),
    moneyTile({ testid: "renewals-amount", label: "Expected to bill", amount: renewals?.amount ?? 0, currency }),
  );
}
