//! Talks to Billy with the session cookie (never a key): reads, the session, CSV export, errors.

/** An error answer of the API, with its stable code and its message for people. */
export class ApiError extends Error {
  constructor(status, code, message, param) {
    super(message);
    this.status = status;
    this.code = code;
    this.param = param;
  }
}

/** Called with the error when any call answers 401 (the session ended); set by the app. */
let onUnauthorized = () => {};
export function whenUnauthorized(handler) {
  onUnauthorized = handler;
}

async function errorOf(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON (a proxy's page, say): the status says enough.
  }
  const e = body?.error;
  return new ApiError(
    response.status,
    e?.code ?? `http_${response.status}`,
    e?.message ?? `${response.status} ${response.statusText || "error"}`,
    e?.param,
  );
}

async function call(method, path, { body, accept = "application/json", quietUnauthorized = false } = {}) {
  let response;
  try {
    response = await fetch(path, {
      method,
      credentials: "same-origin",
      headers: { Accept: accept, ...(body ? { "Content-Type": "application/json" } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
  } catch (cause) {
    throw new ApiError(0, "network_error", `Billy could not be reached (${cause.message}).`);
  }
  if (!response.ok) {
    const error = await errorOf(response);
    if (response.status === 401 && !quietUnauthorized) onUnauthorized(error);
    throw error;
  }
  return response;
}

/** `path` with the query parameters that have a value. */
export function withQuery(path, params = {}) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") query.set(k, v);
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

/** GET a JSON resource. */
export async function get(path, params) {
  return (await call("GET", withQuery(path, params))).json();
}

/** GET as CSV (a Blob), for downloads. */
export async function getCsv(path, params) {
  return (await call("GET", withQuery(path, params), { accept: "text/csv" })).blob();
}

/** The operator session: read, open with a key, close. */
export const session = {
  current: async () => (await call("GET", "/dashboard/session", { quietUnauthorized: true })).json(),
  open: async (apiKey) =>
    (await call("POST", "/dashboard/session", { body: { api_key: apiKey }, quietUnauthorized: true })).json(),
  close: () => call("DELETE", "/dashboard/session", { quietUnauthorized: true }),
};
