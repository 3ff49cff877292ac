//! Customers: the list, and one customer's page (the month so far, its charts, invoices,
//! transactions, and the account's audit trail with its balance).
import { get } from "../api.js";
import { countsOverTime, monthOverTime } from "../charts.js";
import { h, mount, section, table } from "../dom.js";
import { money, thisMonthUtc, when, words } from "../format.js";
import { errorBox, fill, loading, moneyTile, pagedList } from "../ui.js";
import { invoiceColumns } from "./invoices.js";
import { transactionColumns } from "./transactions.js";

export function renderCustomers(page, { navigate }) {
  mount(
    page,
    h("div.page-head", {}, h("h1", {}, "Customers")),
    pagedList({
      testid: "customers",
      loadPage: (cursor) => get("/v1/customers", { limit: 25, starting_after: cursor }),
      renderRows: (rows) =>
        table(
          [
            { label: "Name", cell: (c) => h("a", { href: `#/customers/${encodeURIComponent(c.id)}`, "data-testid": "customer-link" }, c.name ?? "(no name)") },
            { label: "Email", cell: (c) => c.email ?? "—" },
            { label: "Id", cell: (c) => h("code", {}, c.id) },
            { label: "Test clock", cell: (c) => (c.test_clock ? h("code", {}, c.test_clock) : "—") },
            { label: "Created", cell: (c) => when(c.created) },
          ],
          rows,
          { testid: "customers-table", empty: "No customers yet.", onRow: (c) => navigate(`/customers/${encodeURIComponent(c.id)}`) },
        ),
    }),
  );
}

export async function renderCustomer(page, { id, params, navigate }) {
  const month = /^\d{4}-\d{2}$/.test(params.month ?? "") ? params.month : thisMonthUtc();
  const head = h("div.page-head", {});
  const summary = h("div", {});
  const history = h("div", {});
  const invoices = h("div", {});
  const transactions = h("div", {});
  mount(page, loading());

  let customer;
  try {
    customer = await get(`/v1/customers/${encodeURIComponent(id)}`);
  } catch (error) {
    mount(page, h("h1", {}, "Customer"), errorBox(error, "This customer could not be read"));
    return;
  }
  mount(page, head, summary, section("Invoices", invoices), section("Transactions", transactions), history);
  document.title = `${customer.name ?? customer.id} · Billy`;
  const picker = h("input", { type: "month", value: month, max: thisMonthUtc(), "data-testid": "summary-month" });
  picker.addEventListener("change", () => picker.value && navigate(`/customers/${encodeURIComponent(id)}`, { month: picker.value }));
  mount(
    head,
    h(
      "div",
      {},
      h("h1", { "data-testid": "customer-name" }, customer.name ?? "(no name)"),
      h(
        "p.muted",
        {},
        h("code", { "data-testid": "customer-id" }, customer.id),
        customer.email ? ` · ${customer.email}` : "",
        ` · since ${when(customer.created)}`,
        customer.test_clock ? [" · on test clock ", h("code", {}, customer.test_clock)] : "",
      ),
    ),
    h("label.field.inline", {}, h("span", {}, "Month"), picker),
  );

  fill(summary, () => get(`/v1/customers/${encodeURIComponent(id)}/summary`, { month }), summaryView, "The month's summary could not be read");
  fill(
    invoices,
    () => get("/v1/invoices", { customer: id, limit: 10 }),
    (list) => [
      table(invoiceColumns({ customer: false }), list.data, { testid: "customer-invoices", empty: "No invoices." }),
      list.has_more ? h("a.more-link", { href: `#/invoices?customer=${encodeURIComponent(id)}` }, "All invoices →") : null,
    ],
    "The invoices could not be read",
  );
  fill(
    transactions,
    () => get("/v1/transactions", { customer: id, limit: 10 }),
    (list) => [
      table(transactionColumns({ customer: false }), list.data, { testid: "customer-transactions", empty: "No transactions." }),
      list.has_more ? h("a.more-link", { href: `#/transactions?customer=${encodeURIComponent(id)}` }, "All transactions →") : null,
    ],
    "The transactions could not be read",
  );
  fill(history, () => get(`/v1/customers/${encodeURIComponent(id)}/history`), historyView, "The audit trail could not be read");
}

/** The month so far, per currency: figures, a chart per day of money and one of usage per metric. */
function summaryView(s, afterMount) {
  if (!s.currencies?.length) {
    return section(`Month so far · ${s.month}`, h("p.empty", { "data-testid": "summary-empty" }, "Nothing billed or paid out this month."));
  }
  const parts = s.currencies.map((c) => {
    const moneyChart = h("div.chart", { "data-testid": `summary-chart-${c.currency}` });
    const usageChart = h("div.chart.short", { "data-testid": `summary-usage-${c.currency}` });
    afterMount(() => {
      monthOverTime(moneyChart, { daily: c.daily, currency: c.currency });
      if (c.metrics.length) {
        countsOverTime(usageChart, {
          periods: c.daily.map((d) => d.date),
          series: c.metrics.map((m) => ({ name: m.metric, data: c.daily.map((d) => Number(d.usage?.[m.metric] ?? 0)) })),
        });
      }
    });
    return h(
      "div.currency-block",
      { "data-testid": "summary", "data-currency": c.currency },
      h(
        "div.tiles",
        {},
        moneyTile({ testid: "summary-charged", label: "Charged", amount: c.charged, currency: c.currency, note: `${c.invoices} invoices`, tone: "good" }),
        moneyTile({ testid: "summary-paid_out", label: "Paid out", amount: c.paid_out, currency: c.currency }),
        moneyTile({ testid: "summary-commission", label: "Commission", amount: c.commission, currency: c.currency }),
        moneyTile({ testid: "summary-net", label: "Net", amount: c.net, currency: c.currency, tone: "strong" }),
      ),
      moneyChart,
      c.metrics.length
        ? [
            h("h3", {}, "Usage per day"),
            usageChart,
            table(
              [
                { label: "Metric", cell: (m) => m.metric },
                { label: "Direction", cell: (m) => words(m.direction) },
                { label: "Quantity so far", class: "num", cell: (m) => String(m.quantity) },
                { label: "Priced so far", class: "num", cell: (m) => money(m.amount, c.currency) },
              ],
              c.metrics,
              { testid: "summary-metrics" },
            ),
          ]
        : null,
    );
  });
  return section(
    `Month so far · ${s.month}`,
    s.usage_complete === false ? h("p.notice", {}, "Usage was more than a summary reads: quantities are a lower bound.") : null,
    parts,
  );
}

/** The account's balance per currency, its lines with a running balance, and every audit event. */
function historyView(history) {
  const balances = Object.entries(history.balance ?? {});
  const running = new Map();
  const lines = (history.lines ?? []).map((line) => {
    const b = running.get(line.currency) ?? { receivable: 0, payable: 0 };
    b.receivable += line.receivable;
    b.payable += line.payable;
    running.set(line.currency, b);
    return { ...line, owes: b.receivable, owed: b.payable };
  });
  const events = [...(history.events ?? [])].reverse().sort(newestFirst);
  const signed = (v, currency) => (v === 0 ? "" : `${v > 0 ? "+" : ""}${money(v, currency)}`);
  return section(
    "Account history",
    balances.length
      ? balances.map(([currency, b]) =>
          h(
            "div.tiles.small",
            { "data-testid": "balance", "data-currency": currency },
            moneyTile({ testid: "balance-receivable", label: "Customer owes", amount: b.receivable, currency }),
            moneyTile({ testid: "balance-payable", label: "Owed to customer", amount: b.payable, currency }),
            moneyTile({ testid: "balance-invoiced", label: "Invoiced", amount: b.invoiced, currency }),
            moneyTile({ testid: "balance-paid", label: "Paid", amount: b.paid, currency }),
            moneyTile({ testid: "balance-refunded", label: "Refunded", amount: b.refunded, currency }),
            moneyTile({ testid: "balance-paid_out", label: "Paid out", amount: b.paid_out, currency }),
          ),
        )
      : null,
    h("h3", {}, "Balance, line by line"),
    table(
      [
        { label: "When", cell: (l) => when(l.at) },
        { label: "What", cell: (l) => l.description },
        { label: "Invoice", cell: (l) => h("code", {}, l.invoice) },
        { label: "Owes", class: "num", cell: (l) => signed(l.receivable, l.currency) },
        { label: "Owed", class: "num", cell: (l) => signed(l.payable, l.currency) },
        { label: "Balance owed by customer", class: "num", cell: (l) => money(l.owes, l.currency) },
        { label: "Balance owed to customer", class: "num", cell: (l) => money(l.owed, l.currency) },
      ],
      lines,
      { testid: "balance-lines", empty: "No balance movements yet." },
    ),
    h("h3", {}, `Audit trail · ${events.length} events, newest first`),
    auditTable(events),
  );
}

/**
 * Audit events newest first: by instant (compared as times: the API's timestamps vary in
 * precision), then, within one entity, by version (several changes can share an instant: an
 * invoice created and finalized in one step). Versionless events keep their order.
 */
function newestFirst(a, b) {
  const byTime = Date.parse(b.created) - Date.parse(a.created);
  if (byTime !== 0 || a.entity !== b.entity || !a.version || !b.version) return byTime;
  return b.version - a.version;
}

const AUDIT_ROWS_SHOWN = 20;
const AUDIT_COLUMNS = [
  { label: "When", cell: (e) => when(e.created) },
  { label: "Action", cell: (e) => h("code", {}, e.action) },
  { label: "Entity", cell: (e) => h("code", {}, e.entity) },
  { label: "By", cell: (e) => actor(e.actor) },
  { label: "Reason", cell: (e) => e.reason ?? "" },
];

/** The newest events, with a button that shows them all. */
function auditTable(events) {
  const holder = h("div", {});
  const show = (rows) =>
    mount(
      holder,
      table(AUDIT_COLUMNS, rows, { testid: "audit-trail", empty: "No events." }),
      rows.length < events.length
        ? h("button.secondary.more", { type: "button", "data-testid": "audit-trail-all", onClick: () => show(events) }, `Show all ${events.length} events`)
        : null,
    );
  show(events.slice(0, AUDIT_ROWS_SHOWN));
  return holder;
}

function actor(a) {
  if (!a) return "—";
  switch (a.type) {
    case "api_key":
      return `API key ${a.key}`;
    case "admin":
      return "administrator";
    case "system":
      return `Billy (${a.function})`;
    case "gateway":
      return `${a.gateway} webhook`;
    default:
      return JSON.stringify(a);
  }
}

