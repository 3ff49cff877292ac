//! The ledger's transactions, filtered as the API filters them, with an export of the same
//! selection as CSV (the API answers CSV to `Accept: text/csv`).
import { get, getCsv } from "../api.js";
import { badge, h, mount, table } from "../dom.js";
import { money, todayUtc, when, words } from "../format.js";
import { customerLink, errorBox, filterForm, localToRfc3339, pagedList } from "../ui.js";

const TYPES = ["charge", "refund", "payout", "chargeback"];
const STATUSES = ["pending", "unknown", "succeeded", "failed", "canceled"];

/** The columns of a transaction table (without the customer on a customer's own page). */
export function transactionColumns({ customer = true } = {}) {
  return [
    { label: "Transaction", cell: (t) => h("code", { "data-testid": "transaction-id" }, t.id) },
    { label: "Type", cell: (t) => words(t.type) },
    { label: "Status", cell: (t) => badge(t.status) },
    customer ? { label: "Customer", cell: (t) => (t.customer ? customerLink(t.customer) : "—") } : null,
    { label: "Invoice", cell: (t) => (t.invoice ? h("code", {}, t.invoice) : "—") },
    { label: "Amount", class: "num", cell: (t) => money(t.amount, t.currency) },
    { label: "Gateway", cell: (t) => t.gateway ?? "—" },
    { label: "Failure", cell: (t) => (t.failure_reason ? words(t.failure_reason) : "") },
    { label: "Created", cell: (t) => when(t.created) },
  ].filter(Boolean);
}

export function renderTransactions(page, { params, navigate }) {
  const filters = {
    customer: params.customer,
    invoice: params.invoice,
    type: params.type,
    status: params.status,
    created_from: params.created_from,
    created_to: params.created_to,
    amount_min: params.amount_min,
    amount_max: params.amount_max,
    item: params.item,
  };
  const query = {
    ...filters,
    created_from: localToRfc3339(filters.created_from),
    created_to: localToRfc3339(filters.created_to),
  };
  const exportStatus = h("span.export-status", { "data-testid": "export-status", role: "status" });
  const exportButton = h("button.secondary", { type: "button", "data-testid": "export-csv" }, "Export CSV");
  exportButton.addEventListener("click", async () => {
    exportButton.disabled = true;
    mount(exportStatus, "Preparing CSV…");
    try {
      download(await getCsv("/v1/transactions", query), `transactions-${todayUtc()}.csv`);
      mount(exportStatus, "CSV downloaded.");
    } catch (error) {
      mount(exportStatus, errorBox(error, "The export failed"));
    } finally {
      exportButton.disabled = false;
    }
  });
  mount(
    page,
    h("div.page-head", {}, h("h1", {}, "Transactions"), h("div.toolbar", {}, exportButton, exportStatus)),
    filterForm({
      testid: "transaction-filters",
      values: filters,
      fields: [
        { name: "customer", label: "Customer", placeholder: "cus_…" },
        { name: "invoice", label: "Invoice", placeholder: "inv_…" },
        { name: "type", label: "Type", type: "select", options: TYPES },
        { name: "status", label: "Status", type: "select", options: STATUSES },
        { name: "created_from", label: "Created from (UTC)", type: "datetime-local" },
        { name: "created_to", label: "Created to (UTC)", type: "datetime-local" },
        { name: "amount_min", label: "Amount at least (minor units)", type: "number", step: 1 },
        { name: "amount_max", label: "Amount at most (minor units)", type: "number", step: 1 },
        { name: "item", label: "Item text", placeholder: "words of an item" },
      ],
      onApply: (chosen) => navigate("/transactions", chosen),
    }),
    pagedList({
      testid: "transactions",
      loadPage: (cursor) => get("/v1/transactions", { ...query, limit: 25, starting_after: cursor }),
      renderRows: (rows) => table(transactionColumns(), rows, { testid: "transactions-table", empty: "No transaction matches these filters." }),
    }),
  );
}

/** Saves a Blob as a file through a temporary link. */
function download(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: filename, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}
