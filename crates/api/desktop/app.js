// Tollgate agent desktop: plain JavaScript, no build step.
// The token stays in sessionStorage and is sent only as a bearer header. EventSource cannot send
// headers, so each (re)connection trades the token for a single-use ticket (POST
// /v1/pops/ticket) and opens /v1/pops/stream?ticket=...; the token never appears in a URL.
"use strict";

const KEY = "tollgate.token";
const QKEY = "tollgate.queues";
const MAX_CARDS = 200;
const $ = (id) => document.getElementById(id);

let source = null;
let retry = 0;
let retryTimer = null;
let allowed = [];

function token() { return sessionStorage.getItem(KEY); }

async function api(path, opts = {}) {
  const headers = Object.assign({ Authorization: "Bearer " + token() }, opts.headers || {});
  const resp = await fetch(path, Object.assign({}, opts, { headers }));
  let body = null;
  try { body = await resp.json(); } catch (_) { body = null; }
  if (!resp.ok) {
    const msg = body && body.error ? body.error.message : "HTTP " + resp.status;
    const err = new Error(msg);
    err.status = resp.status;
    throw err;
  }
  return body;
}

function setStatus(text, cls) {
  const s = $("status");
  s.textContent = text;
  s.className = "status " + (cls || "");
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function field(dl, label, value) {
  if (value === undefined || value === null || value === "") return;
  dl.append(el("dt", null, label), el("dd", null, value));
}

// One card per pop; only textContent is used, so nothing from a pop is ever parsed as HTML.
function card(pop) {
  const profile = (pop.crm && pop.crm.profile) || null;
  const risk = pop.risk;
  const li = el("li", "pop risk-" + (risk ? risk.level : "unknown"));
  li.dataset.callRef = pop.call_ref;
  li.dataset.queue = pop.queue;

  const head = el("div");
  const name = (profile && profile.name) || pop.presented.display_name || "Unknown caller";
  head.append(el("p", "caller-name", name));
  if (profile && profile.company) head.append(el("div", "company", profile.company));
  const number = pop.presented.restricted ? "Number withheld" : pop.ani;
  head.append(el("div", "number", number));

  const badges = el("div", "badges");
  const rb = el("span", "badge risk-badge " + (risk ? risk.level : "none"),
    risk ? "Risk: " + risk.level : "Risk: n/a");
  if (risk) rb.title = "score " + risk.score;
  badges.append(rb);
  const att = pop.attestation || "none";
  badges.append(el("span", "badge att-badge " + att,
    pop.attestation ? "STIR/SHAKEN " + pop.attestation : "Unsigned"));
  if (profile && profile.tier) badges.append(el("span", "badge tier-badge", profile.tier));
  if (pop.emergency) badges.append(el("span", "badge risk-badge blocked", "EMERGENCY"));

  const dl = el("dl");
  field(dl, "Language", (profile && profile.language) || pop.language);
  const geo = [pop.geo.description, pop.geo.region].filter(Boolean).join(", ");
  field(dl, "Geography", geo);
  field(dl, "Time zone", pop.geo.time_zone);
  field(dl, "Open cases", profile ? profile.open_cases : null);
  field(dl, "Queue", pop.queue);
  field(dl, "Rule", pop.rule);
  field(dl, "Dialed", pop.dnis);
  field(dl, "CRM", profile ? profile.customer_id : pop.crm.status);
  field(dl, "Received", new Date(pop.received_at).toLocaleTimeString());

  li.append(head, badges, dl);
  if (risk && risk.signals && risk.signals.length) {
    li.append(el("p", "signals", "Signals: " + risk.signals.map((s) => s.name).join(", ")));
  }
  return li;
}

function show(pop) {
  const cards = $("cards");
  const dup = cards.querySelector('[data-call-ref="' + CSS.escape(pop.call_ref) + '"]');
  if (dup) dup.remove();
  cards.prepend(card(pop));
  while (cards.children.length > MAX_CARDS) cards.lastElementChild.remove();
  $("empty").hidden = true;
}

function chosenQueues() {
  const boxes = [...document.querySelectorAll("#queue-list input:checked")].map((b) => b.value);
  if (!$("queue-free").hidden) {
    return $("queue-input").value.split(",").map((q) => q.trim()).filter(Boolean);
  }
  return boxes;
}

function disconnect() {
  if (source) { source.close(); source = null; }
  if (retryTimer) { clearTimeout(retryTimer); retryTimer = null; }
}

async function connect() {
  disconnect();
  const queues = chosenQueues();
  sessionStorage.setItem(QKEY, JSON.stringify(queues));
  const q = queues.length ? "&queue=" + encodeURIComponent(queues.join(",")) : "";
  let ticket;
  try {
    ticket = await api("/v1/pops/ticket", { method: "POST" });
  } catch (e) {
    if (e.status === 401) { logout("Your token was refused: " + e.message); return; }
    return scheduleRetry();
  }
  try {
    const recent = await api("/v1/pops?limit=20" + q);
    $("cards").replaceChildren();
    recent.reverse().forEach(show);
  } catch (_) { /* the live stream still works */ }
  source = new EventSource("/v1/pops/stream?ticket=" + encodeURIComponent(ticket.ticket) + q);
  source.addEventListener("hello", () => { retry = 0; setStatus("live", "live"); });
  source.addEventListener("pop", (ev) => {
    try { show(JSON.parse(ev.data)); } catch (_) { /* a malformed pop is skipped */ }
  });
  // A ticket is single-use: on any error, close and reconnect with a fresh one.
  source.onerror = () => { disconnect(); scheduleRetry(); };
}

function scheduleRetry() {
  retry = Math.min(retry + 1, 5);
  const wait = Math.min(1000 * 2 ** (retry - 1), 15000);
  setStatus("reconnecting", "retry");
  retryTimer = setTimeout(connect, wait);
}

function renderQueues(queues) {
  const list = $("queue-list");
  list.replaceChildren();
  const saved = JSON.parse(sessionStorage.getItem(QKEY) || "null");
  const wildcard = queues.includes("*");
  $("queue-free").hidden = !wildcard;
  if (wildcard) {
    $("queue-input").value = (saved || []).join(",");
    return;
  }
  for (const q of queues) {
    const label = el("label");
    const box = el("input");
    box.type = "checkbox";
    box.value = q;
    box.checked = !saved || saved.length === 0 || saved.includes(q);
    label.append(box, " " + q);
    list.append(label);
  }
}

async function start() {
  try {
    const t = await api("/v1/pops/ticket", { method: "POST" });
    allowed = t.queues || [];
    $("who").textContent = t.token;
  } catch (e) {
    logout(e.status === 401 ? "Your token was refused: " + e.message : e.message);
    return;
  }
  $("login-form").hidden = true;
  $("desk").hidden = false;
  $("session").hidden = false;
  renderQueues(allowed);
  connect();
}

function logout(message) {
  disconnect();
  sessionStorage.removeItem(KEY);
  $("desk").hidden = true;
  $("session").hidden = true;
  $("login-form").hidden = false;
  $("login-error").textContent = message || "";
  $("cards").replaceChildren();
  $("empty").hidden = false;
  setStatus("offline");
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = $("token").value.trim();
    if (!t) return;
    sessionStorage.setItem(KEY, t);
    $("token").value = "";
    $("login-error").textContent = "";
    start();
  });
  $("logout").addEventListener("click", () => logout());
  $("apply-queues").addEventListener("click", () => { retry = 0; connect(); });
  if (token()) start();
});
