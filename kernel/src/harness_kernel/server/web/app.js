// The chat page of `harness-kernel serve`: plain JavaScript over the public /v1 API.
// Sessions in the sidebar, the conversation on the right; answers stream in from the
// run's server-sent events, read with fetch (so the API key travels in a header), and a
// dropped stream is resumed from the last durable event id (Last-Event-ID).
"use strict";

const KEY_STORAGE = "harness-kernel-key";
const RETRIES = 30;  // reconnections in a row, up to 3 s apart
const $ = (id) => document.getElementById(id);

const state = {
  key: localStorage.getItem(KEY_STORAGE) || "",
  sessionId: null,
  view: null,
  lastSeq: 0,
  rendered: new Set(),   // message ids already in the transcript
  following: new Set(),  // run ids whose event stream is open
  decided: new Set(),    // runs someone approved, denied or answered: follow them on
  generation: 0,         // bumped when another session is picked: old streams stop
};

// -- the API ------------------------------------------------------------------------

class Problem extends Error {
  constructor(status, doc) {
    super((doc && (doc.detail || doc.title)) || `HTTP ${status}`);
    this.status = status;
    this.code = doc && doc.code;
  }
}

function headers(extra) {
  const h = { ...extra };
  if (state.key) h.authorization = `Bearer ${state.key}`;
  return h;
}

async function request(method, path, body, extra) {
  const init = { method, headers: headers(extra) };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["content-type"] = "application/json";
  }
  const response = await fetch(path, init);
  if (!response.ok) {
    let doc = null;
    try { doc = await response.json(); } catch (_) { /* not a problem document */ }
    if (response.status === 401) askForKey(doc && doc.detail);
    throw new Problem(response.status, doc);
  }
  return response;
}

async function api(method, path, body) {
  const response = await request(method, path, body);
  return response.status === 204 ? null : response.json();
}

const sessionPath = (id, rest = "") => `/v1/sessions/${encodeURIComponent(id)}${rest}`;

// Server-sent events from a fetch response: calls onEvent({event, id, data}) for each.
async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const frame = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const item = { event: "message", id: null, data: "" };
      for (const line of frame.split("\n")) {
        if (!line || line.startsWith(":")) continue;
        const colon = line.indexOf(":");
        const field = colon < 0 ? line : line.slice(0, colon);
        const text = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "event") item.event = text;
        else if (field === "id") item.id = text;
        else if (field === "data") item.data += (item.data ? "\n" : "") + text;
      }
      if (item.data) onEvent({ ...item, data: JSON.parse(item.data) });
    }
  }
}

// -- the API key --------------------------------------------------------------------

function askForKey(detail) {
  $("key-form").hidden = false;
  $("key-error").hidden = !state.key;
  $("key-error").textContent = state.key ? detail || "that key was refused" : "";
}

$("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  state.key = $("api-key").value.trim();
  localStorage.setItem(KEY_STORAGE, state.key);
  $("key-form").hidden = true;
  start();
});

// -- the sidebar --------------------------------------------------------------------

function sessionItem(s) {
  const li = document.createElement("li");
  li.className = "session" + (s.id === state.sessionId ? " selected" : "");
  li.dataset.id = s.id;
  li.dataset.pinned = String(s.pinned);
  const title = document.createElement("span");
  title.className = "title";
  if (s.pinned) {
    const mark = document.createElement("span");
    mark.className = "pin-mark";
    mark.title = "pinned";
    mark.textContent = "★";
    title.append(mark);
  }
  title.append(s.title || s.id);
  const preview = document.createElement("span");
  preview.className = "preview";
  preview.textContent = s.preview || (s.title ? "" : "no answer yet");
  li.append(title, preview);
  for (const tag of s.tags || []) {
    const chip = document.createElement("span");
    chip.className = "tag";
    chip.textContent = tag;
    li.append(chip);
  }
  li.addEventListener("click", () => selectSession(s.id));
  return li;
}

async function loadSessions() {
  // Pinned first, then the others; each by last update.
  const [pinned, others] = await Promise.all([
    api("GET", "/v1/sessions?pinned=true&order=updated&limit=100"),
    api("GET", "/v1/sessions?pinned=false&order=updated&limit=100"),
  ]);
  const list = $("sessions");
  list.replaceChildren(...[...pinned.items, ...others.items].map(sessionItem));
}

$("new-session").addEventListener("click", async () => {
  try {
    const created = await api("POST", "/v1/sessions", {});
    await loadSessions();
    await selectSession(created.id);
  } catch (err) { showError(err); }
});

// -- the conversation ---------------------------------------------------------------

function status(text) { $("status").textContent = text || ""; }
function showError(err) { status(`Error: ${err.message}`); }

function partsOf(message) { return message.parts || []; }

function toolCallBox(call) {
  const box = document.createElement("div");
  box.className = "tool-call";
  box.dataset.callId = call.call_id;
  const name = document.createElement("span");
  name.className = "name";
  name.textContent = call.name;
  const args = document.createElement("pre");
  args.className = "args";
  args.textContent = typeof call.arguments === "string" ? call.arguments : JSON.stringify(call.arguments, null, 1);
  const result = document.createElement("pre");
  result.className = "result";
  box.append("tool ", name, args, result);
  return box;
}

function setToolResult(part) {
  const box = document.querySelector(`.tool-call[data-call-id="${CSS.escape(part.call_id)}"]`);
  if (!box) return false;
  const result = box.querySelector(".result");
  result.textContent = "→ " + part.content;
  result.classList.toggle("error", Boolean(part.is_error));
  return true;
}

function renderMessage(message) {
  if (message.id && state.rendered.has(message.id)) return;
  if (message.id) state.rendered.add(message.id);
  if (message.role === "tool") {
    const orphans = partsOf(message).filter((p) => p.kind === "tool_result" && !setToolResult(p));
    if (!orphans.length) return;
  }
  const li = document.createElement("li");
  li.className = `msg ${message.role}`;
  if (message.id) li.dataset.id = message.id;
  const text = document.createElement("span");
  text.className = "text";
  li.append(text);
  for (const part of partsOf(message)) {
    if (part.kind === "text") text.append(part.text);
    else if (part.kind === "tool_call") li.append(toolCallBox(part));
    else if (part.kind === "tool_result") text.append(`→ ${part.content}`);
  }
  $("transcript").append(li);
  li.scrollIntoView({ block: "end" });
}

function streamingBubble() {
  let li = document.querySelector("#transcript .msg.streaming");
  if (!li) {
    li = document.createElement("li");
    li.className = "msg assistant streaming";
    const text = document.createElement("span");
    text.className = "text";
    li.append(text);
    $("transcript").append(li);
  }
  return li;
}

function dropStreamingBubble() {
  const li = document.querySelector("#transcript .msg.streaming");
  if (li) li.remove();
}

// One item of a run's event stream (durable events carry an id: the seq).
function onRunEvent(item) {
  if (item.id !== null) state.lastSeq = Math.max(state.lastSeq, Number(item.id));
  const data = item.data;
  switch (item.event) {
    case "text.delta":
      streamingBubble().querySelector(".text").append(data.text);
      break;
    case "tool_call.start":
      streamingBubble().append(toolCallBox({ call_id: `streaming-${data.call_id}`, name: data.name, arguments: "" }));
      break;
    case "tool_call.delta": {
      const box = document.querySelector(`.tool-call[data-call-id="${CSS.escape("streaming-" + data.call_id)}"] .args`);
      if (box) box.textContent += data.arguments;
      break;
    }
    case "message.added":
      if (data.data.message.role === "assistant") dropStreamingBubble();
      renderMessage(data.data.message);
      break;
    case "tool.finished":
      // The tool's result, before the history folds it into a tool message.
      if (data.data.result) setToolResult(data.data.result);
      break;
    case "approval.requested":
    case "suspension.requested":
    case "approval.resolved":
    case "suspension.resolved":
      refreshView();
      break;
    case "run.finished":
      dropStreamingBubble();
      if (data.data && data.data.error) {
        const li = document.createElement("li");
        li.className = "msg error";
        li.textContent = data.data.error.message || "the run failed";
        $("transcript").append(li);
      }
      break;
    default:
      break;
  }
}

// Read a run's stream to its end; if the connection drops first, resume it from the
// last durable event seen, so nothing is lost and nothing comes twice.
async function consumeRun(runId, firstResponse) {
  const generation = state.generation;
  let finished = false;
  let response = firstResponse;
  state.following.add(runId);
  $("abort").hidden = false;
  try {
    for (let attempt = 0; attempt <= RETRIES && generation === state.generation; attempt++) {
      let dropped = false;
      try {
        if (!response) {
          response = await request("GET", sessionPath(state.sessionId, `/runs/${encodeURIComponent(runId)}/events`), undefined, {
            accept: "text/event-stream", "last-event-id": String(state.lastSeq),
          });
        }
        await readEvents(response, (item) => {
          if (generation !== state.generation) return;
          if (item.event === "run.finished") finished = true;
          if (item.event === "error") throw new Problem(item.data.status, item.data);
          onRunEvent(item);
        });
        attempt = 0;
      } catch (err) {
        if (err instanceof Problem && err.status < 500) { showError(err); break; }
        dropped = true;
        status("connection lost; resuming…");
        await new Promise((resolve) => setTimeout(resolve, Math.min(3000, 300 * (attempt + 1))));
      }
      response = null;
      if (finished) break;
      if (dropped) continue;  // reconnect, from the last durable event seen
      // The stream ended without the run's end: the run is parked (an approval or an
      // answer is awaited). Nobody decided yet: stop here (deciding follows it again).
      await refreshView();
      if (!state.view || !state.view.current_run || state.view.current_run.run_id !== runId) break;
      if (state.view.status !== "running" && !state.decided.has(runId)) break;
    }
  } finally {
    state.following.delete(runId);
    if (finished) state.decided.delete(runId);
    if (generation === state.generation) {
      dropStreamingBubble();
      if (!finished) await syncHistory();  // whatever the streams did not bring
      await refreshView();
      await loadSessions().catch(() => {});
    }
  }
}

// The latest messages from the history, for any a stream did not deliver (those
// already shown are skipped by id).
async function syncHistory() {
  const id = state.sessionId;
  try {
    const history = await api("GET", sessionPath(id, "/history?limit=50"));
    if (id === state.sessionId) history.items.forEach(renderMessage);
  } catch (err) { showError(err); }
}

async function send(text) {
  const generation = state.generation;
  status("");
  const response = await request("POST", sessionPath(state.sessionId, "/messages"), { text }, { accept: "text/event-stream" });
  if (generation !== state.generation) return;
  const runId = response.headers.get("harness-run-id");
  await consumeRun(runId, response);
}

function follow(runId) {
  if (!state.following.has(runId)) consumeRun(runId, null).catch(showError);
}

// -- approvals and suspensions ------------------------------------------------------

function pendingBox(kind, title, detail) {
  const box = document.createElement("div");
  box.className = kind;
  const head = document.createElement("div");
  head.textContent = title;
  const pre = document.createElement("pre");
  pre.textContent = detail;
  box.append(head, pre);
  return box;
}

async function decide(runId, path, body) {
  state.decided.add(runId);
  follow(runId);  // its events stream in while the run continues (or, if its first
  // stream is still open, that one goes on following it)
  try {
    await api("POST", sessionPath(state.sessionId, path), body);
  } catch (err) { showError(err); }
  await refreshView();
}

function renderPending(view) {
  const pending = $("pending");
  // Unchanged items stay as they are (with a reason or an answer being typed).
  const shown = JSON.stringify([view.id, view.pending_approvals.map((a) => a.approval_id),
    view.pending_suspensions.map((s) => s.call_id)]);
  if (pending.dataset.shown === shown) return;
  pending.dataset.shown = shown;
  pending.replaceChildren();
  for (const a of view.pending_approvals) {
    const box = pendingBox("approval", `Approve ${a.tool}?`, JSON.stringify(a.arguments, null, 1));
    box.dataset.approvalId = a.approval_id;
    const approve = document.createElement("button");
    approve.textContent = "Approve";
    approve.dataset.action = "approve";
    const reason = document.createElement("input");
    reason.placeholder = "reason (for a denial)";
    reason.className = "reason";
    const deny = document.createElement("button");
    deny.textContent = "Deny";
    deny.dataset.action = "deny";
    approve.addEventListener("click", () => decide(a.run_id, `/approvals/${encodeURIComponent(a.approval_id)}/approve`, {}));
    deny.addEventListener("click", () => decide(a.run_id, `/approvals/${encodeURIComponent(a.approval_id)}/deny`,
      reason.value.trim() ? { reason: reason.value.trim() } : {}));
    box.append(approve, " ", reason, " ", deny);
    pending.append(box);
  }
  for (const s of view.pending_suspensions) {
    const box = pendingBox("suspension", `${s.tool} asks:`, typeof s.payload === "string" ? s.payload : JSON.stringify(s.payload, null, 1));
    box.dataset.callId = s.call_id;
    const answer = document.createElement("input");
    answer.placeholder = "your answer";
    const reply = document.createElement("button");
    reply.textContent = "Answer";
    reply.dataset.action = "resume";
    reply.addEventListener("click", () => decide(s.run_id, `/suspensions/${encodeURIComponent(s.call_id)}/resume`, { data: answer.value }));
    box.append(answer, " ", reply);
    pending.append(box);
  }
}

function renderMeta(view) {
  if (document.activeElement && document.activeElement.closest("#meta")) return;  // being edited
  $("title").value = view.title || "";
  $("tags").value = (view.tags || []).join(" ");
  $("pinned").checked = Boolean(view.pinned);
  $("session-id").textContent = view.id;
}

async function refreshView() {
  if (!state.sessionId) return;
  const id = state.sessionId;
  try {
    const view = await api("GET", sessionPath(id));
    if (id !== state.sessionId) return;
    state.view = view;
    renderPending(view);
    renderMeta(view);
    const running = view.status === "running";
    $("abort").hidden = !(running || view.pending_approvals.length || view.pending_suspensions.length);
    status(running ? "running…" : view.status === "idle" ? "" : view.status.replace("_", " "));
  } catch (err) { showError(err); }
}

async function selectSession(id) {
  state.generation += 1;
  state.sessionId = id;
  state.rendered = new Set();
  if (location.hash.slice(1) !== encodeURIComponent(id)) location.hash = encodeURIComponent(id);
  for (const li of document.querySelectorAll(".session")) li.classList.toggle("selected", li.dataset.id === id);
  $("empty").hidden = true;
  $("conversation").hidden = false;
  $("transcript").replaceChildren();
  $("pending").replaceChildren();
  delete $("pending").dataset.shown;
  try {
    const [view, history] = await Promise.all([api("GET", sessionPath(id)), api("GET", sessionPath(id, "/history?limit=500"))]);
    if (id !== state.sessionId) return;
    state.view = view;
    state.lastSeq = view.last_seq;
    history.items.forEach(renderMessage);
    renderPending(view);
    renderMeta(view);
    await refreshView();
    if (view.current_run && view.status === "running") follow(view.current_run.run_id);
  } catch (err) { showError(err); }
}

$("composer").addEventListener("submit", async (e) => {
  e.preventDefault();
  const text = $("message").value.trim();
  if (!text || !state.sessionId) return;
  $("message").value = "";
  try { await send(text); } catch (err) { showError(err); }
});

$("message").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) {
    e.preventDefault();
    $("composer").requestSubmit();
  }
});

$("abort").addEventListener("click", async () => {
  try { await api("POST", sessionPath(state.sessionId, "/abort")); } catch (err) { showError(err); }
  await refreshView();
});

$("meta").addEventListener("submit", async (e) => {
  e.preventDefault();
  const body = {
    title: $("title").value.trim(),
    tags: $("tags").value.split(/[\s,]+/).filter(Boolean),
    pinned: $("pinned").checked,
  };
  try {
    document.activeElement.blur();
    state.view = await api("PATCH", sessionPath(state.sessionId), body);
    renderMeta(state.view);
    status("saved");
    await loadSessions();
  } catch (err) { showError(err); }
});

window.addEventListener("hashchange", () => {
  const id = decodeURIComponent(location.hash.slice(1));
  if (id && id !== state.sessionId) selectSession(id);
});

async function start() {
  try {
    await loadSessions();
    const id = decodeURIComponent(location.hash.slice(1));
    if (id) await selectSession(id);
  } catch (err) {
    if (!(err instanceof Problem && err.status === 401)) showError(err);
  }
}

start();
