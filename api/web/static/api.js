// Parley's HTTP API as the page uses it: every call carries the key from this tab's
// session storage; every failure becomes an ApiError with the envelope's type and message.

const KEY_SLOT = "parley.apiKey";

export class ApiError extends Error {
  constructor(status, type, message, retryAfter = null) {
    super(message);
    this.status = status;
    this.type = type;
    this.retryAfter = retryAfter; // seconds, from Retry-After on 429 and 503
  }

  describe() {
    let text = `${this.type}: ${this.message}`;
    if (this.retryAfter !== null) {
      const at = new Date(Date.now() + this.retryAfter * 1000).toLocaleTimeString();
      text += ` Try again in ${this.retryAfter} s (at ${at}).`;
    }
    return text;
  }
}

export const session = {
  get key() { return sessionStorage.getItem(KEY_SLOT); },
  set key(value) { sessionStorage.setItem(KEY_SLOT, value); },
  forget() { sessionStorage.removeItem(KEY_SLOT); },
};

// Called with the error when a request is refused with 401 (revoked key, or another tab signed out).
let onUnauthorized = () => {};
export function whenUnauthorized(callback) { onUnauthorized = callback; }

function headers(extra = {}, key = session.key) {
  return { Authorization: `Bearer ${key}`, ...extra };
}

export async function errorOf(response) {
  let type = `http_${response.status}`;
  let message = response.statusText || "Request failed.";
  try {
    const body = await response.json();
    if (body && body.error) ({ type, message } = body.error);
  } catch { /* not an envelope (a proxy's page): keep the status line */ }
  const header = response.headers.get("Retry-After");
  const retryAfter = header !== null && /^\d+$/.test(header.trim()) ? Number(header) : null;
  return new ApiError(response.status, type, message, retryAfter);
}

async function call(method, path, { body, key, extraHeaders } = {}) {
  const init = { method, headers: headers(extraHeaders, key), cache: "no-store" };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, "network_error", "Parley could not be reached. Check your connection.");
  }
  if (!response.ok) {
    const error = await errorOf(response);
    if (response.status === 401 && key === undefined) onUnauthorized(error);
    throw error;
  }
  return response.status === 204 ? null : response.json();
}

const id = (value) => encodeURIComponent(value);

// crypto.randomUUID exists only in secure contexts; getRandomValues everywhere.
function idempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

export const api = {
  // Checks a key before it is kept: the models list needs a key and changes nothing.
  checkKey: (key) => call("GET", "/v1/models", { key }),
  models: () => call("GET", "/v1/models"),
  conversations: (cursor, limit = 20) =>
    call("GET", `/v1/conversations?limit=${limit}${cursor ? `&cursor=${id(cursor)}` : ""}`),
  conversation: (conversationId) => call("GET", `/v1/conversations/${id(conversationId)}`),
  // A page of messages, newest first: the page never reads a whole history at once.
  messages: (conversationId, before, limit = 50) =>
    call("GET", `/v1/conversations/${id(conversationId)}/messages?limit=${limit}${before ? `&before=${id(before)}` : ""}`),
  create: (fields) => call("POST", "/v1/conversations", { body: fields }),
  update: (conversationId, fields) => call("PATCH", `/v1/conversations/${id(conversationId)}`, { body: fields }),
  remove: (conversationId) => call("DELETE", `/v1/conversations/${id(conversationId)}`),
  // The Idempotency-Key makes a resend after a lost response return the same job, not a second one.
  send: (conversationId, content) => call("POST", `/v1/conversations/${id(conversationId)}/messages`, {
    body: { content }, extraHeaders: { "Idempotency-Key": idempotencyKey() },
  }),
  job: (jobId) => call("GET", `/v1/jobs/${id(jobId)}`),
  cancel: (jobId) => call("POST", `/v1/jobs/${id(jobId)}/cancel`),
  usage: () => call("GET", "/v1/usage"),
  // The raw response of a job's event stream, for stream.js.
  events: (jobId, lastEventId, signal) => fetch(`/v1/jobs/${id(jobId)}/events`, {
    headers: headers({ Accept: "text/event-stream", ...(lastEventId ? { "Last-Event-ID": String(lastEventId) } : {}) }),
    cache: "no-store",
    signal,
  }),
};
