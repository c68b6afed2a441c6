// A job's Server-Sent Events read with fetch streaming: EventSource cannot send the
// Authorization header. A dropped connection is resumed with Last-Event-ID, so every
// event is handled exactly once, in order, until the job's final event.

import { errorOf } from "./api.js";

const FINAL = new Set(["job.succeeded", "job.failed", "job.cancelled", "job.requires_action"]);
const MAX_RETRIES = 8; // in a row without an event; about a minute of backoff in all

// Yields {id, event, data} for each complete event in a text/event-stream body.
async function* parse(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let fields = { id: null, event: "message", data: [] };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      let newline;
      while ((newline = buffer.search(/\r\n|\r|\n/)) >= 0) {
        const line = buffer.slice(0, newline);
        buffer = buffer.slice(newline + (buffer.startsWith("\r\n", newline) ? 2 : 1));
        if (line === "") {
          if (fields.data.length) yield { id: fields.id, event: fields.event, data: fields.data.join("\n") };
          fields = { id: null, event: "message", data: [] };
        } else if (!line.startsWith(":")) { // ":" lines are keep-alive pings
          const colon = line.indexOf(":");
          const name = colon < 0 ? line : line.slice(0, colon);
          const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
          if (name === "data") fields.data.push(text);
          else if (name === "event") fields.event = text;
          else if (name === "id") fields.id = Number(text);
        }
      }
    }
  } finally {
    reader.releaseLock();
  }
}

const pause = (ms, signal) => new Promise((resolve) => {
  const timer = setTimeout(resolve, ms);
  signal?.addEventListener("abort", () => { clearTimeout(timer); resolve(); }, { once: true });
});

// Follows a job to its end. `onEvent(event, data)` sees each event once; `onRetry(attempt)`
// is told when the connection dropped and a resume is under way. Resolves with the final
// event's name and job, or null when `signal` aborted it.
export async function follow(open, { onEvent, onRetry = () => {}, signal } = {}) {
  let last = 0;
  let failures = 0;
  while (!signal?.aborted) {
    let problem = null;
    try {
      const response = await open(last, signal);
      if (!response.ok) {
        const error = await errorOf(response);
        // Only a busy or unavailable server is worth asking again; anything else is final.
        if (![429, 502, 503, 504].includes(response.status)) throw error;
        problem = error;
      } else {
        for await (const event of parse(response.body)) {
          if (event.id !== null && event.id <= last) continue; // never twice
          if (event.id !== null) last = event.id;
          failures = 0;
          const data = JSON.parse(event.data);
          onEvent(event.event, data);
          if (FINAL.has(event.event)) return { event: event.event, job: data };
        }
      }
    } catch (error) {
      if (signal?.aborted) break;
      if (error?.type && !(error instanceof TypeError)) throw error; // an ApiError from above
      problem = error;
    }
    // The stream ended before the job did (dropped connection, restarted server): resume.
    failures += 1;
    if (failures > MAX_RETRIES) throw problem || new Error("The event stream kept closing.");
    onRetry(failures, problem);
    const wait = problem?.retryAfter ? problem.retryAfter * 1000 : Math.min(8000, 250 * 2 ** (failures - 1));
    await pause(wait, signal);
  }
  return null;
}
