// The page: sign in with a key, the conversation list, the dialogs, keyboard shortcuts.

import { api, session, whenUnauthorized } from "./api.js";
import { Chat, usageLine } from "./chat.js";
import { $, el } from "./dom.js";

const state = { conversations: [], cursor: null, selected: null, models: null, editing: null };
const chat = new Chat({ onChanged: (conversationId, job) => refresh(conversationId, job) });

const nameOf = (c) => c.name || "Untitled conversation";
const when = (iso) => new Date(iso).toLocaleString([], { dateStyle: "medium", timeStyle: "short" });

// --- signing in and out ---------------------------------------------------------

function showSignedIn(signedIn) {
  $("signin").hidden = signedIn;
  $("workspace").hidden = !signedIn;
  for (const id of ["sign-out", "show-usage", "toggle-list"]) $(id).hidden = !signedIn;
}

async function signIn(event) {
  event.preventDefault();
  const key = $("api-key").value.trim();
  const error = $("signin-error");
  error.textContent = "";
  if (!key) { error.textContent = "Paste an API key first."; return; }
  try {
    state.models = await api.checkKey(key);
  } catch (problem) {
    error.textContent = problem.status === 401
      ? `That key was not accepted: ${problem.message}` : `Could not sign in: ${problem.describe()}`;
    return;
  }
  session.key = key;
  $("api-key").value = "";
  await start();
}

function signOut(message = "") {
  session.forget();
  chat.forget();
  Object.assign(state, { conversations: [], cursor: null, selected: null, models: null, editing: null });
  $("conversation-list").replaceChildren();
  drawHeader(); // nothing of this user's stays on the page for the next one
  chat.status("");
  showSignedIn(false);
  $("signin-error").textContent = message;
  $("api-key").focus();
}

whenUnauthorized((error) => signOut(`Signed out: ${error.message}`));

async function start() {
  showSignedIn(true);
  try {
    state.models = state.models || await api.models();
    await loadConversations(true);
  } catch (error) {
    chat.status(error.describe(), true);
    return;
  }
  await selectNewest();
}

async function selectNewest() {
  if (state.conversations.length) return select(state.conversations[0].id);
  setListOpen(true); // on a phone the list is where "New conversation" is
  $("new-conversation").focus();
}

// --- the conversation list -----------------------------------------------------

async function loadConversations(fromStart) {
  const page = await api.conversations(fromStart ? null : state.cursor);
  state.conversations = fromStart ? page.data : [...state.conversations, ...page.data];
  state.cursor = page.next_cursor;
  drawList();
}

function drawList() {
  const list = $("conversation-list");
  list.replaceChildren(...state.conversations.map((conversation) => {
    const item = el("li");
    const button = el("button", "conversation");
    button.type = "button";
    button.dataset.id = conversation.id;
    button.append(el("span", "name", nameOf(conversation)), el("span", "when", when(conversation.updated_at)));
    if (conversation.id === state.selected?.id) button.setAttribute("aria-current", "true");
    button.addEventListener("click", () => select(conversation.id));
    item.append(button);
    return item;
  }));
  if (!state.conversations.length) list.append(el("li", "empty", "No conversations yet."));
  $("more-conversations").hidden = !state.cursor;
}

function drawHeader() {
  const c = state.selected;
  $("chat-title").textContent = c ? nameOf(c) : "No conversation selected";
  $("chat-meta").textContent = c ? `${c.model} · ${c.message_count} messages · ${usageLine(c)}` : "";
  $("edit-conversation").disabled = !c;
  $("delete-conversation").disabled = !c;
}

async function select(conversationId) {
  const known = state.conversations.find((c) => c.id === conversationId);
  const pending = chat.pending(conversationId);
  let conversation, page;
  try {
    [conversation, page] = await Promise.all([known || api.conversation(conversationId), api.messages(conversationId)]);
  } catch (error) {
    chat.status(error.describe(), true);
    return;
  }
  state.selected = conversation;
  drawHeader();
  drawList();
  chat.open(conversation, page, pending);
  setListOpen(false);
  $("message-input").focus();
}

// A conversation as the API just gave it: replaces the listed one, or heads the list if new.
function remember(conversation) {
  const at = state.conversations.findIndex((c) => c.id === conversation.id);
  if (at >= 0) state.conversations[at] = conversation;
  else state.conversations.unshift(conversation);
  if (state.selected?.id === conversation.id) state.selected = conversation;
}

const COUNTERS = ["input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "cost_usd"];

// After a job ends: fresh counters from the first page of the list (no history is read);
// a conversation further down the list adds the turn's own usage instead.
async function refresh(conversationId, job) {
  try {
    const page = await api.conversations(null);
    const fresh = page.data.find((c) => c.id === conversationId);
    if (fresh) remember(fresh);
    else if (job?.status === "succeeded") {
      const conversation = state.conversations.find((c) => c.id === conversationId);
      const usage = job.reply?.usage || {};
      if (conversation) {
        conversation.message_count += 2;
        for (const field of COUNTERS) if (typeof usage[field] === "number") conversation[field] = (conversation[field] || 0) + usage[field];
      }
    }
    drawHeader();
    drawList();
  } catch { /* the next action shows any problem */ }
}

// --- the dialogs -----------------------------------------------------------------

function openConversationDialog(conversation) {
  state.editing = conversation;
  $("conversation-dialog-title").textContent = conversation ? "Edit conversation" : "New conversation";
  $("conversation-save").textContent = conversation ? "Save" : "Create";
  $("conversation-name").value = conversation?.name || "";
  $("conversation-system").value = conversation?.system || "";
  const models = state.models || { default: "", data: [] };
  $("conversation-model").replaceChildren(...models.data.map((model) => {
    const option = el("option", null, model === models.default ? `${model} (default)` : model);
    option.value = model;
    return option;
  }));
  $("conversation-model").value = conversation?.model || models.default;
  $("conversation-error").textContent = "";
  $("conversation-dialog").showModal();
}

async function saveConversation(event) {
  event.preventDefault();
  const fields = { name: $("conversation-name").value.trim() || null,
    system: $("conversation-system").value.trim() || null, model: $("conversation-model").value || null };
  try {
    const saved = state.editing ? await api.update(state.editing.id, fields) : await api.create(fields);
    $("conversation-dialog").close();
    remember(saved);
    await select(saved.id);
  } catch (error) {
    $("conversation-error").textContent = error.describe();
  }
}

function confirmDelete() {
  const dialog = $("delete-dialog");
  $("delete-dialog-text").textContent = `“${nameOf(state.selected)}”, its messages and its log are deleted for good.`;
  dialog.returnValue = "";
  dialog.showModal();
}

async function deleteSelected() {
  if ($("delete-dialog").returnValue !== "delete" || !state.selected) return;
  try {
    await api.remove(state.selected.id);
  } catch (error) {
    chat.status(error.describe(), true);
    return;
  }
  chat.forget(state.selected.id);
  state.selected = null;
  drawHeader();
  await loadConversations(true);
  await selectNewest();
}

async function showUsage() {
  const body = $("usage-table").tBodies[0];
  body.replaceChildren();
  $("usage-error").textContent = "";
  $("usage-dialog").showModal();
  try {
    const report = await api.usage();
    for (const day of [...report.days].reverse().concat([report.totals])) {
      const row = el("tr");
      row.append(el("th", null, day.day === "total" ? "Total" : day.day));
      row.firstChild.scope = "row";
      for (const field of ["turns", "input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"]) {
        row.append(el("td", null, Number(day[field] || 0).toLocaleString("en")));
      }
      body.append(row);
    }
  } catch (error) {
    $("usage-error").textContent = error.describe();
  }
}

function setListOpen(open) {
  document.body.classList.toggle("list-open", open);
  $("toggle-list").setAttribute("aria-expanded", String(open));
}

// --- wiring ----------------------------------------------------------------------

async function submitMessage(event) {
  event?.preventDefault();
  const input = $("message-input");
  if (await chat.send(input.value)) input.value = "";
  input.focus();
}

function wire() {
  $("signin-form").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", () => signOut("Signed out. The key was forgotten."));
  $("new-conversation").addEventListener("click", () => openConversationDialog(null));
  $("edit-conversation").addEventListener("click", () => openConversationDialog(state.selected));
  $("conversation-form").addEventListener("submit", saveConversation);
  $("conversation-cancel").addEventListener("click", () => $("conversation-dialog").close());
  $("delete-conversation").addEventListener("click", confirmDelete);
  $("delete-dialog").addEventListener("close", deleteSelected);
  $("more-conversations").addEventListener("click", () => loadConversations(false).catch((e) => chat.status(e.describe(), true)));
  $("show-usage").addEventListener("click", showUsage);
  $("toggle-list").addEventListener("click", () => setListOpen(!document.body.classList.contains("list-open")));
  $("composer").addEventListener("submit", submitMessage);
  $("stop").addEventListener("click", () => chat.stop());
  $("message-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) submitMessage(event);
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !$("stop").hidden && !document.querySelector("dialog[open]")) {
      event.preventDefault();
      chat.stop();
    }
  });
}

wire();
if (session.key) start(); else showSignedIn(false);
