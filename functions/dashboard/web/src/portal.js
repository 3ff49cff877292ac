//! The customer portal: what one customer sees through a link their provider made for them (a
//! portal session): their name, their month so far with a chart, and their invoices. It reads
//! only /portal/api/*, with the portal cookie the link set.
import { ApiError, get } from "./api.js";
import { monthOverTime } from "./charts.js";
import { badge, h, mount, section, table } from "./dom.js";
import { day, money, thisMonthUtc, when } from "./format.js";
import { errorBox, loading, modeBand, moneyTile, pagedList } from "./ui.js";

export async function startPortal(root) {
  mount(root, loading());
  let customer;
  try {
    customer = await get("/portal/api/customer");
  } catch (error) {
    mount(root, refused(error));
    return;
  }
  document.title = `${customer.name ?? "Your account"} · Billing`;
  const summary = h("div", {});
  mount(
    root,
    modeBand(customer.livemode),
    h("header.top.portal", {}, h("span.brand", {}, "Billing"), h("span.tenant", { "data-testid": "portal-customer" }, customer.name ?? "Your account")),
    h(
      "main.view",
      { "data-testid": "portal" },
      h("div.page-head", {}, h("div", {}, h("h1", { "data-testid": "portal-name" }, customer.name ?? "Your account"), customer.email ? h("p.muted", {}, customer.email) : null)),
      summary,
      section(
        "Your invoices",
        pagedList({
          testid: "portal-invoices",
          loadPage: (cursor) => get("/portal/api/invoices", { limit: 20, starting_after: cursor }),
          renderRows: (rows) =>
            table(
              [
                { label: "Invoice", cell: (i) => h("code", { "data-testid": "invoice-id" }, i.id) },
                { label: "Date", cell: (i) => when(i.created) },
                { label: "Period", cell: (i) => (i.period_start ? `${day(i.period_start)} – ${day(i.period_end)}` : "—") },
                { label: "Status", cell: (i) => badge(i.status) },
                { label: "Total", class: "num", cell: (i) => money(i.total, i.currency) },
                { label: "Refunded", class: "num", cell: (i) => (i.amount_refunded ? money(i.amount_refunded, i.currency) : "") },
              ],
              rows,
              { testid: "portal-invoices-table", empty: "You have no invoices yet." },
            ),
        }),
      ),
    ),
  );
  await showSummary(summary);
}

async function showSummary(el) {
  mount(el, loading());
  let s;
  try {
    s = await get("/portal/api/summary", { month: thisMonthUtc() });
  } catch (error) {
    mount(el, errorBox(error, "Your month so far could not be read"));
    return;
  }
  if (!s.currencies?.length) {
    mount(el, section(`This month · ${s.month}`, h("p.empty", {}, "Nothing billed or paid out this month yet.")));
    return;
  }
  const charts = [];
  mount(
    el,
    section(
      `This month so far · ${s.month}`,
      s.currencies.map((c) => {
        const chart = h("div.chart", { "data-testid": `portal-chart-${c.currency}` });
        charts.push(() => monthOverTime(chart, { daily: c.daily, currency: c.currency }));
        return h(
          "div.currency-block",
          { "data-testid": "portal-summary", "data-currency": c.currency },
          h(
            "div.tiles",
            {},
            moneyTile({ testid: "portal-charged", label: "Charged", amount: c.charged, currency: c.currency, tone: "good" }),
            moneyTile({ testid: "portal-paid_out", label: "Paid out to you", amount: c.paid_out, currency: c.currency }),
            c.commission ? moneyTile({ testid: "portal-commission", label: "Fees", amount: c.commission, currency: c.currency }) : null,
            moneyTile({ testid: "portal-net", label: "Net", amount: c.net, currency: c.currency, tone: "strong" }),
          ),
          chart,
        );
      }),
    ),
  );
  for (const draw of charts) draw();
}

/** What a visitor without a valid portal session sees. */
function refused(error) {
  const expired = error instanceof ApiError && error.status === 401;
  return h(
    "main.view.refused",
    { "data-testid": "portal-refused" },
    h("h1", {}, expired ? "This link has expired or is not valid" : "Your account could not be shown"),
    expired ? h("p", {}, "Ask the business that sent it for a new link.") : errorBox(error),
  );
}
