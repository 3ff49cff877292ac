//! Pieces every page uses: the test/live marking, error and loading states, figure tiles,
//! filter forms and "load more" lists.
import { h, mount } from "./dom.js";
import { money } from "./format.js";

/** The band that marks test data or live data, on every page. */
export function modeBand(livemode) {
  return livemode
    ? h("div.mode-band.live", { "data-testid": "mode-band", "data-livemode": "true", role: "status" }, "LIVE — real money")
    : h("div.mode-band.test", { "data-testid": "mode-band", "data-livemode": "false", role: "status" }, "TEST MODE — test data, no real money moves");
}

/** An API error as people should see it: what failed, Billy's message, and its code. */
/** A link to a customer's page, showing its id. */
export function customerLink(id) {
  return h("a", { href: `#/customers/${encodeURIComponent(id)}` }, h("code", {}, id));
}

export function errorBox(error, what = "Billy could not answer") {
  return h(
    "div.error",
    { role: "alert", "data-testid": "error", "data-code": error?.code ?? "" },
    h("strong", {}, what),
    h("span", {}, error?.message ?? String(error)),
    error?.code ? h("code", {}, error.code) : null,
  );
}

export function loading(text = "Loading…") {
  return h("p.loading", { "aria-busy": "true" }, text);
}

/** A figure tile: the formatted amount, with its raw minor units in data-value for machines. */
export function moneyTile({ testid, label, amount, currency, note, tone }) {
  return h(
    "div.tile",
    { "data-testid": testid, "data-value": amount, "data-currency": currency, class: tone ? `tone-${tone}` : undefined },
    h("span.tile-label", {}, label),
    h("span.tile-value", {}, money(amount, currency)),
    note ? h("span.tile-note", {}, note) : null,
  );
}

/** A figure tile for a count. */
export function countTile({ testid, label, count, note }) {
  return h(
    "div.tile",
    { "data-testid": testid, "data-value": count },
    h("span.tile-label", {}, label),
    h("span.tile-value", {}, new Intl.NumberFormat().format(count)),
    note ? h("span.tile-note", {}, note) : null,
  );
}

/**
 * Runs `load` and puts what `render(data, afterMount)` makes of it into `el`, or the error.
 * `afterMount(fn)` runs `fn` once the result is in the document (charts need their element there).
 */
export async function fill(el, load, render, what) {
  mount(el, loading());
  let data;
  try {
    data = await load();
  } catch (error) {
    mount(el, errorBox(error, what));
    return;
  }
  const pending = [];
  mount(el, render(data, (fn) => pending.push(fn)));
  for (const fn of pending) fn();
}

/**
 * A filter form whose fields mirror the API's query parameters. `fields`: `{name, label, type,
 * options?, placeholder?}`; submitting calls `onApply` with the non-empty values.
 */
export function filterForm({ fields, values, onApply, testid, actions = [] }) {
  const inputs = fields.map((f) => {
    const input =
      f.type === "select"
        ? h("select", { name: f.name }, h("option", { value: "" }, "Any"), f.options.map((o) => h("option", { value: o }, o.replaceAll("_", " "))))
        : h("input", { name: f.name, type: f.type ?? "text", placeholder: f.placeholder, step: f.step, min: f.min });
    input.value = values[f.name] ?? "";
    return h("label.field", {}, h("span", {}, f.label), input);
  });
  const form = h(
    "form.filters",
    {
      "data-testid": testid,
      onSubmit: (event) => {
        event.preventDefault();
        const chosen = {};
        for (const [k, v] of new FormData(form)) if (String(v).trim() !== "") chosen[k] = String(v).trim();
        onApply(chosen);
      },
    },
    inputs,
    h("div.filter-actions", {}, h("button", { type: "submit" }, "Apply"), h("button.secondary", { type: "button", onClick: () => onApply({}) }, "Clear"), actions),
  );
  return form;
}

/**
 * A list read page by page (`{data, has_more, next_cursor}`): `loadPage(cursor)` reads one page,
 * `renderRows(rows)` draws all rows read so far; a "Load more" button reads the next.
 */
export function pagedList({ loadPage, renderRows, testid }) {
  const rowsEl = h("div", {});
  const moreEl = h("div.more", {});
  const rows = [];
  async function next(cursor) {
    mount(moreEl, loading());
    try {
      const page = await loadPage(cursor);
      rows.push(...page.data);
      mount(rowsEl, renderRows(rows));
      mount(
        moreEl,
        page.has_more && page.next_cursor
          ? h("button.secondary", { type: "button", "data-testid": testid && `${testid}-more`, onClick: () => next(page.next_cursor) }, "Load more")
          : null,
      );
    } catch (error) {
      mount(moreEl, errorBox(error));
    }
  }
  next(undefined);
  return h("div", { "data-testid": testid }, rowsEl, moreEl);
}

/** "2026-12-05T10:00" from a datetime-local input → RFC 3339 in UTC, as the API wants. */
export function localToRfc3339(value) {
  if (!value) return undefined;
  if (/Z$|[+-]\d\d:\d\d$/.test(value)) return value;
  return `${value.length === 16 ? `${value}:00` : value}Z`;
}
