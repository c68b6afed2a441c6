// The open conversation: its messages, sending, the streamed reply, stop.

import { api, ApiError } from "./api.js";
import { render } from "./markdown.js";
import { follow } from "./stream.js";
import { $, el } from "./dom.js";

const number = (n) => Number(n || 0).toLocaleString("en");

// "12 in · 30 out · 100 cache reads · 0 cache writes", plus the cost once the API reports one.
export function usageLine(usage) {
  if (!usage) return "";
  const parts = [`${number(usage.input_tokens)} in`, `${number(usage.output_tokens)} out`,
    `${number(usage.cache_read_input_tokens)} cache reads`, `${number(usage.cache_creation_input_tokens)} cache writes`];
  const cost = usage.cost_usd ?? usage.cost;
  if (typeof cost === "number") parts.push(`≈ $${cost.toFixed(4)}`);
  return `Tokens: ${parts.join(" · ")}`;
}

function textOf(content) {
  if (typeof content === "string") return content;
  if (Array.isArray(content)) return content.filter((b) => b && b.type === "text").map((b) => b.text).join("\n\n");
  return "";
}

function bubble(role, text, before = null) {
  const item = el("li", `message ${role}`);
  item.append(el("p", "author", role === "user" ? "You" : "Claude"));
  const body = el("div", "body");
  if (role === "user") body.textContent = text; // what the user typed, shown as typed
  else body.append(render(text));
  item.append(body);
  const foot = el("p", "foot");
  item.append(foot);
  $("messages").insertBefore(item, before);
  return { item, body, foot };
}

// One submitted job shown as a reply that fills in as its events arrive.
class Reply {
  constructor(job, chat, ahead) {
    this.job = job;
    this.chat = chat;
    this.text = "";
    this.view = bubble("assistant", "");
    this.view.item.dataset.job = job.id;
    this.view.item.setAttribute("aria-busy", "true");
    this.controller = new AbortController();
    this.drawing = false;
    this.say("queued", ahead ? `Queued behind ${ahead} earlier message(s)` : "Queued");
  }

  say(state, note) {
    this.view.item.dataset.state = state;
    this.view.foot.textContent = note;
  }

  draw() { // at most once a frame, however many deltas came
    if (this.drawing) return;
    this.drawing = true;
    requestAnimationFrame(() => {
      this.drawing = false;
      this.view.body.replaceChildren(render(this.text));
      this.chat.scroll();
    });
  }

  onEvent(event, data) {
    if (event === "job.started") this.say("streaming", "Writing…");
    else if (event === "thinking.delta") this.say("streaming", "Thinking…");  // the thought itself stays folded away
    else if (event === "message.delta") { this.text += data.text; this.say("streaming", "Writing…"); this.draw(); }
    else if (event === "message.reset") { this.text = ""; this.say("streaming", "Retrying the model call…"); this.draw(); }
  }

  async run() {
    try {
      const end = await follow((after, signal) => api.events(this.job.id, after, signal), {
        onEvent: (event, data) => this.onEvent(event, data),
        onRetry: (attempt) => this.say("reconnecting", `Connection lost; resuming (attempt ${attempt})…`),
        signal: this.controller.signal,
      });
      if (end) this.finish(end.job);
    } catch (error) {
      this.say("failed", error instanceof ApiError ? error.describe() : `Stream failed: ${error.message}`);
      this.view.foot.setAttribute("role", "alert");
    } finally {
      this.view.item.removeAttribute("aria-busy");
      this.chat.settled(this);
    }
  }

  finish(job) {
    this.final = job;
    if (job.status === "succeeded") {
      // The deltas make the stored reply; replayed-from-nothing (events expired) shows it too.
      if (!this.text) { this.text = textOf(job.reply?.content); this.draw(); }
      const reply = job.reply || {};
      if (reply.outcome === "refused") {  // kept in the history, never sent to Claude again
        this.say("refused", `${reply.notice || "Claude declined to answer this message."} ${usageLine(reply.usage)}`);
        this.view.foot.setAttribute("role", "alert");
        return;
      }
      const cut = reply.outcome === "truncated" ? ` (cut short: ${reply.stop_reason}; say "continue" for the rest)` : "";
      this.say("done", usageLine(reply.usage) + cut);
    } else if (job.status === "cancelled") {
      this.say("cancelled", "Stopped. This message and its reply were not kept.");
    } else if (job.status === "requires_action") {  // client tools: the caller runs them, not this page
      if (!this.text) { this.text = textOf(job.reply?.content); this.draw(); }
      const names = (job.required_action?.tool_calls || []).map((call) => call.name).join(", ");
      this.say("done", `Claude called ${names}: answer with POST /v1/jobs/${job.id}/tool_results.`);
    } else {
      const error = job.error || {};
      this.say("failed", `Failed: ${error.type || "error"}: ${error.message || "no details"}`);
      this.view.foot.setAttribute("role", "alert");
    }
  }
}

export class Chat {
  constructor({ onChanged }) {
    this.conversation = null;
    // Unfinished replies of every conversation, oldest first. Leaving a conversation only
    // takes its bubbles off the page: the streams go on, and reopening puts them back.
    this.replies = [];
    this.onChanged = onChanged; // (conversation id, final job or undefined) after a job ends
  }

  scroll() { const list = $("messages"); list.scrollTop = list.scrollHeight; }

  status(text, alert = false) {
    const status = $("status");
    status.textContent = text;
    status.classList.toggle("error", alert);
  }

  shown() { return this.replies.filter((r) => r.conversationId === this.conversation?.id); }

  busy() {
    const shown = this.shown();
    $("stop").hidden = shown.length === 0;
    if (shown.length > 1) this.status(`${shown.length - 1} message(s) waiting behind the current reply.`);
  }

  // Unfinished replies of a conversation, taken before its messages are read (see open).
  pending(conversationId) { return this.replies.filter((r) => r.conversationId === conversationId); }

  // `page`: the newest messages, newest first, as GET /v1/conversations/{id}/messages gives
  // them; `pending`: this page's unfinished replies from before that read. A reply whose job
  // finished in between is in the page already (messages carry their job_id).
  open(conversation, page, pending = []) {
    this.close();
    this.conversation = conversation;
    const list = $("messages");
    this.showPage(page, null);
    const stored = new Set(page.data.map((m) => m.job_id));
    for (const reply of pending) {
      if (!stored.has(reply.job.id)) list.append(reply.userItem, reply.view.item);
    }
    if (!list.children.length) list.append(el("li", "empty", "No messages yet. Say something."));
    this.scroll();
    $("message-input").disabled = false;
    $("send").disabled = false;
    this.status("");
    this.busy();
  }

  // Older messages go above `anchor` (the first shown), with a button for the page before them.
  showPage(page, anchor) {
    const list = $("messages");
    for (const message of page.data) anchor = bubble(message.role, textOf(message.content), anchor).item;
    if (!page.has_more) return;
    const item = el("li", "earlier");
    const button = el("button", null, "Show earlier messages");
    button.type = "button";
    item.append(button);
    list.insertBefore(item, anchor);
    const conversationId = this.conversation.id;
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        const older = await api.messages(conversationId, page.last_cursor);
        if (this.conversation?.id !== conversationId) return;
        item.remove();
        this.showPage(older, anchor);
      } catch (error) {
        button.disabled = false;
        this.status(error.describe(), true);
      }
    });
  }

  close() {
    this.conversation = null;
    $("messages").replaceChildren();
    $("message-input").disabled = true;
    $("send").disabled = true;
    this.busy();
  }

  // Stops following the replies of a deleted conversation, or all of them on signing out.
  forget(conversationId = null) {
    const gone = (r) => conversationId === null || r.conversationId === conversationId;
    for (const reply of this.replies.filter(gone)) reply.controller.abort();
    this.replies = this.replies.filter((r) => !gone(r));
    this.close();
  }

  async send(content) {
    if (!this.conversation || !content.trim()) return false;
    const conversationId = this.conversation.id;
    let job;
    try {
      ({ job } = await api.send(conversationId, content));
    } catch (error) {
      this.status(error.describe(), true);
      return false;
    }
    if (this.conversation?.id !== conversationId) return true; // switched away: it shows when reopened
    $("messages").querySelector(".empty")?.remove();
    this.status("");
    const ahead = this.pending(conversationId).length;
    const userItem = bubble("user", content).item;
    const reply = new Reply(job, this, ahead);
    Object.assign(reply, { conversationId, userItem });
    this.replies.push(reply);
    this.busy();
    this.scroll();
    reply.run();
    return true;
  }

  settled(reply) {
    this.replies = this.replies.filter((r) => r !== reply);
    this.busy();
    if (!reply.controller.signal.aborted) this.onChanged(reply.conversationId, reply.final);
  }

  // Stop: cancel the reply being written and every message waiting behind it.
  async stop() {
    const errors = [];
    for (const reply of this.shown()) {
      try { await api.cancel(reply.job.id); } catch (error) {
        if (error.type !== "job_finished") errors.push(error.describe());
      }
    }
    if (errors.length) this.status(errors.join(" "), true);
  }
}
