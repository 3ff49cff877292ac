//! The world the browser test looks at, made through Billy's HTTP API (loopback only): two
//! tenants, customers with cards, paid, refunded and declined invoices, a payout and a renewal.
export class Api {
  constructor(base) {
    this.base = base;
  }

  /** One call: `{status, body, text, headers}`; `key` as a Bearer token. */
  async call(method, path, { key, body, accept = "application/json" } = {}) {
    const response = await fetch(`${this.base}${path}`, {
      method,
      headers: {
        Accept: accept,
        ...(key ? { Authorization: `Bearer ${key}` } : {}),
        ...(body ? { "Content-Type": "application/json" } : {}),
      },
      body: body ? JSON.stringify(body) : undefined,
      redirect: "manual",
      signal: AbortSignal.timeout(30_000),
    });
    const text = await response.text();
    let json = null;
    try {
      json = JSON.parse(text);
    } catch {
      // CSV, HTML or empty: the text is there.
    }
    return { status: response.status, body: json, text, headers: response.headers };
  }

  /** A call that must answer `expected`; its JSON body. */
  async expect(expected, method, path, options) {
    const r = await this.call(method, path, options);
    if (r.status !== expected) {
      throw new Error(`${method} ${path} answered ${r.status}, expected ${expected}: ${r.text.slice(0, 500)}`);
    }
    return r.body;
  }

  get(path, key) {
    return this.expect(200, "GET", path, { key });
  }

  post(path, key, body, expected = 201) {
    return this.expect(expected, "POST", path, { key, body });
  }
}

/** Polls `probe` until it returns a truthy value, at most `seconds`; fails with `what` and the last value. */
export async function until(what, probe, seconds = 60) {
  const deadline = Date.now() + seconds * 1000;
  let last;
  for (;;) {
    last = await probe();
    if (last && last.ok !== false) return last;
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${seconds}s waiting until ${what}; last seen: ${JSON.stringify(last?.seen ?? last).slice(0, 800)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

const day = 24 * 60 * 60 * 1000;
const isoDay = (ms) => new Date(ms).toISOString().slice(0, 10);

/** A tenant with its test key. */
async function tenant(api, admin, name) {
  const t = await api.post("/v1/tenants", admin, { name });
  return { id: t.id, name, key: t.api_keys.test };
}

async function customer(api, key, body, card) {
  const c = await api.post("/v1/customers", key, body);
  if (card) await api.post(`/v1/customers/${c.id}/payment_methods`, key, { type: "card", card: { number: card } });
  return c;
}

async function invoiceBecomes(api, key, id, statuses) {
  const wanted = [statuses].flat();
  return until(`invoice ${id} is ${wanted.join(" or ")}`, async () => {
    const inv = await api.get(`/v1/invoices/${id}`, key);
    return wanted.includes(inv.status) ? inv : { ok: false, seen: inv };
  });
}

/** A one-off invoice of `amount`, charged; waited for until it reaches one of `statuses`. */
async function oneOff(api, key, customerId, amount, description, statuses) {
  const draft = await api.post("/v1/invoices", key, {
    customer: customerId,
    currency: "usd",
    items: [{ description, unit_amount: amount }],
  });
  await api.post(`/v1/invoices/${draft.id}/charge`, key, {}, 200);
  return invoiceBecomes(api, key, draft.id, statuses);
}

async function clockSettled(api, key, clock) {
  return until(`test clock ${clock} is ready`, async () => {
    const c = await api.get(`/v1/test_clocks/${clock}`, key);
    return c.status === "ready" ? c : { ok: false, seen: c };
  }, 90);
}

/**
 * Seeds both tenants. Tenant A (the one the test signs in as first): Ada pays 123.45 (23.45 of it
 * refunded) and 50.00, and subscribes weekly for 19.99 (a renewal in 7 days); Grace's card is
 * declined (a failed first attempt); Paul, on a test clock started 8 days ago, is paid out 300.00
 * at the end of his first week. Tenant B has one customer of its own.
 */
export async function seed(api, admin) {
  const run = Date.now().toString(36);
  const a = await tenant(api, admin, `Acme Browser ${run}`);
  const b = await tenant(api, admin, `Globex Browser ${run}`);

  const ada = await customer(api, a.key, { name: `Ada Lovelace ${run}`, email: `ada-${run}@example.com` }, "4242424242424242");
  const paid = await oneOff(api, a.key, ada.id, 12_345, "Analytical engine tuning", "paid");
  await api.expect(200, "PATCH", `/v1/invoices/${paid.id}`, { key: a.key, body: { action: "refund", amount: 2_345, reason: "goodwill" } });
  const refunded = await invoiceBecomes(api, a.key, paid.id, "partially_refunded");
  const second = await oneOff(api, a.key, ada.id, 5_000, "Difference engine notes", "paid");
  const plan = await api.post("/v1/plans", a.key, { name: "Weekly", amount: 1_999, currency: "usd", frequency: "weekly", interval: 1, kind: "fixed_debit" });
  const subscription = await api.post("/v1/subscriptions", a.key, { customer: ada.id, plan: plan.id });
  const firstBill = await until("the subscription's first invoice is paid", async () => {
    const list = await api.get(`/v1/invoices?subscription=${subscription.id}`, a.key);
    const inv = list.data[0];
    return inv?.status === "paid" ? inv : { ok: false, seen: list };
  });

  const grace = await customer(api, a.key, { name: `Grace Hopper ${run}` }, "4000000000000002");
  const declined = await oneOff(api, a.key, grace.id, 7_700, "Compiler", ["charged_with_error", "failed"]);

  // Paul is paid weekly on a test clock that starts 8 days ago (at midnight UTC), so his first
  // week ends yesterday and the clock is moved to an hour after it: a payout dated yesterday.
  const start = Date.parse(`${isoDay(Date.now() - 8 * day)}T00:00:00Z`);
  const clock = await api.post("/v1/test_clocks", a.key, { frozen_time: new Date(start).toISOString().replace(".000", "") });
  const paul = await customer(api, a.key, { name: `Paul Payee ${run}`, test_clock: clock.id });
  await api.post(`/v1/customers/${paul.id}/payout_destinations`, a.key, { type: "bank_account", bank_account: { account_number: "000123456789" } });
  const payroll = await api.post("/v1/plans", a.key, { name: "Payroll", amount: 30_000, currency: "usd", frequency: "weekly", kind: "fixed_payout" });
  const payoutSub = await api.post("/v1/subscriptions", a.key, { customer: paul.id, plan: payroll.id });
  await clockSettled(api, a.key, clock.id);
  await api.post(`/v1/test_clocks/${clock.id}/advance`, a.key, { frozen_time: new Date(start + 7 * day + 60 * 60 * 1000).toISOString().replace(".000", "") }, 200);
  await clockSettled(api, a.key, clock.id);
  const payout = await until("Paul's first payout is paid out", async () => {
    const list = await api.get(`/v1/invoices?subscription=${payoutSub.id}`, a.key);
    const inv = list.data.find((i) => i.status === "paid_out");
    return inv ?? { ok: false, seen: list };
  }, 90);

  const bea = await customer(api, b.key, { name: `Bea Globex ${run}`, email: `bea-${run}@example.org` }, "4242424242424242");
  const beaInvoice = await oneOff(api, b.key, bea.id, 999, "Globex widget", "paid");

  return {
    a,
    b,
    ada,
    grace,
    paul,
    bea,
    invoices: { refunded, second, firstBill, declined, payout, beaInvoice },
    // What tenant A's reports must come to once every event is tallied.
    expected: {
      collected: 12_345 + 5_000 + firstBill.total,
      refunded: 2_345,
      paidOut: payout.total,
      firstAttemptFailed: 1,
    },
  };
}
