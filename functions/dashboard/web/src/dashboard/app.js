//! The operator dashboard: sign-in with an API key (kept only in the form field), then a shell with
//! the test/live marking, navigation and sign-out around the page the URL's hash names.
import { session, whenUnauthorized } from "../api.js";
import { disposeAll } from "../charts.js";
import { h, mount } from "../dom.js";
import { errorBox, loading, modeBand } from "../ui.js";
import { renderCustomer, renderCustomers } from "./customers.js";
import { renderInvoices } from "./invoices.js";
import { renderOverview } from "./overview.js";
import { renderTransactions } from "./transactions.js";

const pages = [
  { path: "/overview", label: "Overview", render: renderOverview },
  { path: "/customers", label: "Customers", render: renderCustomers },
  { path: "/invoices", label: "Invoices", render: renderInvoices },
  { path: "/transactions", label: "Transactions", render: renderTransactions },
];

/** The hash as a route: "#/customers/cus_1?x=1" → {path: "/customers/cus_1", params: {x: "1"}}. */
function route() {
  const hash = location.hash.replace(/^#/, "") || "/overview";
  const [path, query = ""] = hash.split("?");
  return { path, params: Object.fromEntries(new URLSearchParams(query)) };
}

/** Moves to `path` with `params` (empty ones left out); the hashchange renders it. */
export function navigate(path, params = {}) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== ""));
  const text = query.toString();
  location.hash = `#${path}${text ? `?${text}` : ""}`;
}

export async function startDashboard(root) {
  whenUnauthorized(() => showSignIn(root, "Your session has ended. Sign in again."));
  mount(root, loading());
  try {
    showShell(root, await session.current());
  } catch (error) {
    showSignIn(root, error.status === 401 ? null : error);
  }
}

function showSignIn(root, problem) {
  disposeAll();
  window.onhashchange = null;
  const key = h("input", {
    id: "api-key",
    name: "api_key",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    placeholder: "sk_test_…",
    "data-testid": "api-key",
  });
  const message = h("div", { "data-testid": "signin-message" });
  if (problem) mount(message, typeof problem === "string" ? h("p.notice", {}, problem) : errorBox(problem, "Could not check your session"));
  const button = h("button", { type: "submit", "data-testid": "sign-in" }, "Sign in");
  const form = h(
    "form.signin",
    {
      "data-testid": "signin-form",
      onSubmit: async (event) => {
        event.preventDefault();
        button.disabled = true;
        mount(message, loading("Signing in…"));
        // The key lives only in this field: it is read once, sent once, and the field cleared,
        // whatever the answer. The session that comes back is an HttpOnly cookie.
        const apiKey = key.value.trim();
        key.value = "";
        try {
          const opened = await session.open(apiKey);
          showShell(root, opened);
        } catch (error) {
          mount(message, errorBox(error, error.status === 401 ? "That key was not accepted" : "Could not sign in"));
          button.disabled = false;
          key.focus();
        }
      },
    },
    h("h1", {}, "Billy"),
    h("p.muted", {}, "Sign in with a secret API key of your tenant. The dashboard is read-only; the key is not stored."),
    h("label.field", { for: "api-key" }, h("span", {}, "Secret API key"), key),
    button,
    message,
  );
  mount(root, h("div.signin-page", {}, form));
  key.focus();
}

function showShell(root, current) {
  const view = h("main.view", { "data-testid": "view" });
  const links = pages.map((p) => h("a", { href: `#${p.path}`, "data-path": p.path, "data-testid": `nav-${p.path.slice(1)}` }, p.label));
  const signOut = h(
    "button.link",
    {
      type: "button",
      "data-testid": "sign-out",
      onClick: async () => {
        try {
          await session.close();
        } catch {
          // The cookie may already be gone; signed out either way.
        }
        history.replaceState(null, "", location.pathname);
        showSignIn(root, "You are signed out.");
      },
    },
    "Sign out",
  );
  mount(
    root,
    modeBand(current.livemode),
    h(
      "header.top",
      {},
      h("span.brand", {}, "Billy"),
      h("span.tenant", { "data-testid": "tenant-name", title: current.tenant }, current.tenant_name ?? current.tenant),
      h("nav", {}, links),
      signOut,
    ),
    view,
  );
  const ctx = { session: current, navigate };

  const render = () => {
    disposeAll();
    const { path, params } = route();
    for (const a of links) a.classList.toggle("active", path.startsWith(a.dataset.path));
    const page = mount(view, h("div.page", {}));
    const customer = path.match(/^\/customers\/([^/]+)$/);
    if (customer) return renderCustomer(page, { ...ctx, params, id: decodeURIComponent(customer[1]) });
    const known = pages.find((p) => p.path === path);
    if (!known) return navigate("/overview");
    document.title = `${known.label} · Billy`;
    return known.render(page, { ...ctx, params });
  };
  window.onhashchange = render;
  render();
}
