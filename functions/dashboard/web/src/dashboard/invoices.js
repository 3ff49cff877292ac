//! Invoices, filtered exactly as the API filters them (customer, subscription, status, period).
import { get } from "../api.js";
import { badge, h, mount, table } from "../dom.js";
import { day, money, when, words } from "../format.js";
import { customerLink, filterForm, localToRfc3339, pagedList } from "../ui.js";

export const INVOICE_STATUSES = [
  "draft", "pending", "paid", "charged_with_error", "failed", "canceled", "refunded", "partially_refunded",
  "in_protest", "chargeback", "paid_out", "payout_failed", "in_settlement", "settled",
];

/** The columns of an invoice table (without the customer on a customer's own page). */
export function invoiceColumns({ customer = true } = {}) {
  return [
    { label: "Invoice", cell: (i) => h("code", { "data-testid": "invoice-id" }, i.id) },
    customer ? { label: "Customer", cell: (i) => customerLink(i.customer) } : null,
    { label: "Status", cell: (i) => badge(i.status) },
    { label: "Kind", cell: (i) => (i.direction === "payout" ? "payout" : "charge") },
    { label: "Total", class: "num", cell: (i) => money(i.total, i.currency) },
    { label: "Refunded", class: "num", cell: (i) => (i.amount_refunded ? money(i.amount_refunded, i.currency) : "") },
    { label: "Period", cell: (i) => (i.period_start ? `${day(i.period_start)} – ${day(i.period_end)}` : "one-off") },
    { label: "Attempts", class: "num", cell: (i) => String(i.attempt_count ?? 0) },
    { label: "Failure", cell: (i) => (i.failure_reason ? words(i.failure_reason) : "") },
    { label: "Created", cell: (i) => when(i.created) },
  ].filter(Boolean);
}

export function renderInvoices(page, { params, navigate }) {
  const filters = {
    customer: params.customer,
    subscription: params.subscription,
    status: params.status,
    period_from: params.period_from,
    period_to: params.period_to,
  };
  mount(
    page,
    h("div.page-head", {}, h("h1", {}, "Invoices")),
    filterForm({
      testid: "invoice-filters",
      values: filters,
      fields: [
        { name: "customer", label: "Customer", placeholder: "cus_…" },
        { name: "subscription", label: "Subscription", placeholder: "sub_…" },
        { name: "status", label: "Status", type: "select", options: INVOICE_STATUSES },
        { name: "period_from", label: "Period from (UTC)", type: "datetime-local" },
        { name: "period_to", label: "Period to (UTC)", type: "datetime-local" },
      ],
      onApply: (chosen) => navigate("/invoices", chosen),
    }),
    pagedList({
      testid: "invoices",
      loadPage: (cursor) =>
        get("/v1/invoices", {
          ...filters,
          period_from: localToRfc3339(filters.period_from),
          period_to: localToRfc3339(filters.period_to),
          limit: 25,
          starting_after: cursor,
        }),
      renderRows: (rows) => table(invoiceColumns(), rows, { testid: "invoices-table", empty: "No invoice matches these filters." }),
    }),
  );
}
