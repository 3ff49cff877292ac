//! A tiny element builder: h("tag.class", {attrs}, ...children). Text is always set as text, never
//! parsed as HTML, so names and messages from the API cannot inject markup.

/** Builds an element. `attrs` keys: `on<Event>` handlers, `dataset`-style `data-*`, `class`, anything else as attribute. */
export function h(tag, attrs = {}, ...children) {
  const [name, ...classes] = tag.split(".");
  const el = document.createElement(name);
  if (classes.length) el.className = classes.join(" ");
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2).toLowerCase(), value);
    else if (key === "class") el.classList.add(...String(value).split(/\s+/).filter(Boolean));
    else if (key === "value") el.value = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces everything inside `el`. */
export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A table from column definitions `{label, cell(row) → node|string, class?}`; `empty` when there are no rows. */
export function table(columns, rows, { testid, empty = "Nothing here yet.", onRow } = {}) {
  if (!rows.length) return h("p.empty", { "data-testid": testid && `${testid}-empty` }, empty);
  return h(
    "table.data",
    { "data-testid": testid },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { class: c.class }, c.label)))),
    h(
      "tbody",
      {},
      rows.map((row) =>
        h(
          "tr",
          { class: onRow ? "clickable" : undefined, onClick: onRow && (() => onRow(row)) },
          columns.map((c) => h("td", { class: c.class }, c.cell(row))),
        ),
      ),
    ),
  );
}

/** A section with a heading. */
export function section(title, ...children) {
  return h("section.card", {}, h("h2", {}, title), ...children);
}

/** A small coloured label for a status. */
export function badge(status) {
  return h("span.badge", { "data-status": status }, String(status).replaceAll("_", " "));
}
