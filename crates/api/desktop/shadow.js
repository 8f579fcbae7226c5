// Tollgate shadow rules view: GET /v1/admin/shadow every few seconds, rendered with
// textContent only. Needs an admin token, kept in sessionStorage and sent only as a bearer
// header.
"use strict";

const KEY = "tollgate.admin-token";
const EVERY_MS = 3000;
const $ = (id) => document.getElementById(id);
let timer = null;

function el(tag, text) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
}

function row(cells) {
  const tr = el("tr");
  for (const c of cells) tr.append(el("td", c));
  return tr;
}

function render(v) {
  const s = v.summary || {};
  $("state").textContent = v.active
    ? "Shadow " + v.version + (v.dir ? " from " + v.dir : "") + " is evaluated on every call; it never changes an answer."
    : "No shadow rules are loaded.";
  $("load-errors").textContent = (v.load_errors || []).length
    ? "The last shadow load failed (" + v.load_failed_at + "): " + v.load_errors.join("; ")
    : "";
  $("calls").textContent = s.calls || 0;
  $("moved").textContent = s.moved || 0;
  $("share").textContent = ((s.moved_share || 0) * 100).toFixed(1) + " %";
  $("since").textContent = s.since ? new Date(s.since).toLocaleString() : "-";
  $("live-version").textContent = v.live_version || "-";
  $("pairs").tBodies[0].replaceChildren(...(s.top_pairs || []).map((p) =>
    row([p.live_rule, p.live_answer, p.shadow_rule, p.shadow_answer, p.calls, (p.samples || []).join(" ")])));
  $("dnis").tBodies[0].replaceChildren(...(s.by_dnis || []).map((d) => row([d.dnis, d.calls, d.moved])));
}

async function refresh() {
  timer = null;
  try {
    const resp = await fetch("/v1/admin/shadow", {
      headers: { Authorization: "Bearer " + sessionStorage.getItem(KEY) },
    });
    const body = await resp.json().catch(() => null);
    if (!resp.ok) {
      const msg = body && body.error ? body.error.message : "HTTP " + resp.status;
      if (resp.status === 401 || resp.status === 403) { logout("Your token was refused: " + msg); return; }
      throw new Error(msg);
    }
    render(body);
    $("login-form").hidden = true;
    $("shadow").hidden = false;
    $("session").hidden = false;
    $("status").textContent = "live";
    $("status").className = "status live";
  } catch (_) {
    $("status").textContent = "retrying";
    $("status").className = "status retry";
  }
  timer = setTimeout(refresh, EVERY_MS);
}

function logout(message) {
  if (timer) { clearTimeout(timer); timer = null; }
  sessionStorage.removeItem(KEY);
  $("shadow").hidden = true;
  $("session").hidden = true;
  $("login-form").hidden = false;
  $("login-error").textContent = message || "";
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = $("token").value.trim();
    if (!t) return;
    sessionStorage.setItem(KEY, t);
    $("token").value = "";
    $("login-error").textContent = "";
    refresh();
  });
  $("logout").addEventListener("click", () => logout());
  if (sessionStorage.getItem(KEY)) refresh();
});
