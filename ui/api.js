// The dashboard's only way to the server: the public REST API under /api/v1,
// with the bearer token the user pasted (kept in sessionStorage, so it ends
// with the tab).

const BASE = "/api/v1";
const TOKEN_KEY = "chronosched.token";
const ACTIONS_KEY = "chronosched.actions";

/** An error answer of the API: its HTTP status, gRPC code and message. */
export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || [];
  }

  /** The ErrorInfo reason (DAG_SEALED, TOKEN_MISSING, ...), if any. */
  get reason() {
    const info = this.details.find((d) => d && typeof d.reason === "string");
    return info ? info.reason : "";
  }
}

export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** With auth off there is no token to show rights: the user opts in. */
export function actionsOptIn() {
  return sessionStorage.getItem(ACTIONS_KEY) === "1";
}

export function setActionsOptIn(on) {
  if (on) sessionStorage.setItem(ACTIONS_KEY, "1");
  else sessionStorage.removeItem(ACTIONS_KEY);
}

/** Path segments are escaped one by one: ids and names go in as given. */
export function path(...segments) {
  return "/" + segments.map((s) => encodeURIComponent(String(s))).join("/");
}

/**
 * One call. `query` values that are empty are left out. Resolves to the
 * parsed JSON; rejects with ApiError carrying the API's own message.
 */
export async function call(apiPath, { method = "GET", body, query, signal } = {}) {
  const url = new URL(BASE + apiPath, window.location.origin);
  for (const [key, value] of Object.entries(query || {})) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, String(value));
  }
  const headers = { accept: "application/json" };
  const token = getToken();
  if (token) headers.authorization = `Bearer ${token}`;
  let payload;
  if (body !== undefined) {
    headers["content-type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(url, { method, headers, body: payload, signal, cache: "no-store" });
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new ApiError(0, 14, `cannot reach the API: ${err && err.message ? err.message : err}`);
  }
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : {};
  } catch {
    data = null;
  }
  if (!resp.ok) {
    const message = data && typeof data.message === "string" ? data.message : text || resp.statusText;
    throw new ApiError(resp.status, data ? data.code : undefined, message, data ? data.details : []);
  }
  return data || {};
}

/**
 * Every page of a list call, `page_size` items at a time, following
 * next_page_token. Stops after `max` items (then `truncated` is true).
 */
export async function listAll(apiPath, field, { query = {}, pageSize = 1000, max = Infinity, signal } = {}) {
  const items = [];
  let token = "";
  for (;;) {
    const page = await call(apiPath, {
      query: { ...query, page_size: pageSize, page_token: token },
      signal,
    });
    items.push(...(page[field] || []));
    token = page.next_page_token || "";
    if (!token) return { items, truncated: false };
    if (items.length >= max) return { items, truncated: true };
  }
}
