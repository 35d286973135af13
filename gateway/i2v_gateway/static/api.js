// Calls to the gateway: the bearer token, the API's error shape, and a job's live events.
const TOKEN_KEY = "i2v.token";

export function getToken() {
  return localStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) localStorage.setItem(TOKEN_KEY, value);
  else localStorage.removeItem(TOKEN_KEY);
}

export function authHeaders(extra = {}) {
  const headers = new Headers(extra);
  const token = getToken();
  if (token) headers.set("Authorization", "Bearer " + token);
  return headers;
}

// {"error": {"message", "type", "param", "code"}} from the gateway, or what a proxy sent instead.
export class ApiError extends Error {
  constructor(status, body, text) {
    const err = (body && body.error) || {};
    super(err.message || text || `HTTP ${status}`);
    this.status = status;
    this.param = err.param || null;
    this.type = err.type || null;
    this.code = err.code || null;
  }
}

async function failure(response) {
  const text = await response.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = null;
  }
  const short = text.length > 200 ? text.slice(0, 200) + "…" : text;
  return new ApiError(response.status, body, short || response.statusText);
}

export async function api(path, { method = "GET", body = undefined, signal = undefined } = {}) {
  const response = await fetch(path, {
    method, body, signal, headers: authHeaders({ Accept: "application/json" }),
  });
  if (!response.ok) throw await failure(response);
  if (response.status === 204) return null;
  return response.json();
}

export async function fetchBlob(path) {
  const response = await fetch(path, { headers: authHeaders() });
  if (!response.ok) throw await failure(response);
  return response.blob();
}

// Server-sent events read through fetch (EventSource cannot send an Authorization header).
// Yields {id, event, data} per message; `retry` updates the reconnect delay in `state`.
async function* readEvents(response, state) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const message = parseBlock(block, state);
      if (message) yield message;
    }
  }
}

function parseBlock(block, state) {
  const message = { id: null, event: "message", data: [] };
  for (const line of block.split("\n")) {
    if (!line || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") message.data.push(value);
    else if (field === "event") message.event = value;
    else if (field === "id") message.id = value;
    else if (field === "retry" && /^\d+$/.test(value)) state.retryMs = Number(value);
  }
  if (message.id !== null) state.lastId = message.id;
  if (!message.data.length) return null;
  const text = message.data.join("\n");
  try {
    message.data = JSON.parse(text);
  } catch {
    message.data = { text };
  }
  return message;
}

const TERMINAL = new Set(["completed", "failed", "cancelled"]);

export function isTerminal(status) {
  return TERMINAL.has(status);
}

// Follows one job: SSE first, reconnecting with Last-Event-ID; after `maxFailures` broken
// connections in a row (or no SSE at all) it polls the job instead. `onMode` hears "live",
// "reconnecting" or "polling"; `onEvent` hears each event; the promise ends at a final state.
export function watchJob(id, { onEvent, onMode, maxFailures = 3, pollMs = 1000 }) {
  const state = { lastId: null, retryMs: 1000, stopped: false, failures: 0 };
  const controller = new AbortController();
  const stop = () => {
    state.stopped = true;
    controller.abort();
  };
  const done = (async () => {
    while (!state.stopped && state.failures < maxFailures) {
      onMode(state.failures ? "reconnecting" : "live");
      const final = await streamOnce(id, state, controller.signal, onEvent);
      if (final || state.stopped) return;
      await sleep(state.retryMs);
    }
    if (!state.stopped) {
      onMode("polling");
      await poll(id, state, onEvent, pollMs);
    }
  })();
  return { stop, done };
}

async function streamOnce(id, state, signal, onEvent) {
  const headers = authHeaders({ Accept: "text/event-stream" });
  if (state.lastId !== null) headers.set("Last-Event-ID", state.lastId);
  let response;
  try {
    response = await fetch(`/v1/videos/${encodeURIComponent(id)}/events`, { headers, signal });
  } catch {
    state.failures += 1;
    return false;
  }
  if (!response.ok || !(response.headers.get("Content-Type") || "").startsWith("text/event-stream")) {
    // A client error will not heal by reconnecting: go straight to polling, which reports it.
    state.failures = response.status >= 400 && response.status < 500 ? Infinity : state.failures + 1;
    return false;
  }
  try {
    for await (const message of readEvents(response, state)) {
      if (message.event === "error") return watchFailed(message.data, state, onEvent);
      state.failures = 0;
      onEvent(message.event, message.data);
      if (isTerminal(message.data.status)) return true;
    }
  } catch {
    // the connection broke: reconnect below
  }
  state.failures += 1;
  return false;
}

// The gateway's `error` event: {error, status} with an HTTP status. A client error (the job is
// gone, the token is refused) will not heal by reconnecting: polling reports it and stops.
function watchFailed(data, state, onEvent) {
  const status = Number(data.status) || 500;
  onEvent("error", { message: (data.error && data.error.message) || "the event stream failed", status });
  state.failures = status < 500 ? Infinity : state.failures + 1;
  return false;
}

async function poll(id, state, onEvent, pollMs) {
  while (!state.stopped) {
    try {
      const video = await api(`/v1/videos/${encodeURIComponent(id)}`);
      onEvent("poll", video);
      if (isTerminal(video.status)) return;
    } catch (err) {
      onEvent("error", { message: err.message, status: err.status });
      if (err.status === 404 || err.status === 401 || err.status === 403) return;
    }
    await sleep(pollMs);
  }
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
