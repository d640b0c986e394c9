// tellscan Studio. Plain JavaScript, loaded from /studio/studio.js under a CSP that allows no
// inline script. The API key and the admin token live in `session` below, in this page's
// memory only: never in the URL, a cookie or storage. Reloading the page signs out.
"use strict";

const session = { key: null, token: null };

const $ = (id) => document.getElementById(id);

// ---- small DOM helpers: text only, never HTML built from data ----

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "class") node.className = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

function show(node, visible) {
  node.hidden = !visible;
}

function say(node, text) {
  node.textContent = text || "";
  show(node, Boolean(text));
}

function percent(x) {
  return `${Math.round(x * 100)} %`;
}

// RFC 3339 → "2026-12-07 13:05:09 UTC": the same on every machine.
function when(text) {
  if (!text) return "never";
  const d = new Date(text);
  return Number.isNaN(d.getTime()) ? text : d.toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC");
}

function inSeconds(secs) {
  const s = Number(secs);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${Math.round(s / 3600)} h`;
  return `${Math.round(s / 86400)} days`;
}

// ---- the API: every call sends credentials in headers and reads the one error shape ----

class ApiFailure extends Error {
  constructor(status, code, detail) {
    super(detail ? `${detail} (${code}, HTTP ${status})` : `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

async function call(method, path, { key, token, body, headers } = {}) {
  const h = new Headers(headers || {});
  if (key) h.set("x-api-key", key);
  if (token) h.set("authorization", `Bearer ${token}`);
  let payload = body;
  if (body && !(body instanceof FormData)) {
    h.set("content-type", "application/json");
    payload = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, { method, headers: h, body: payload, credentials: "omit", cache: "no-store" });
  } catch (e) {
    throw new ApiFailure(0, "network", `the server cannot be reached: ${e.message}`);
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (_) {
    data = null;
  }
  if (!response.ok) {
    throw new ApiFailure(response.status, data && data.error ? data.error : "error", data && data.detail ? data.detail : text.slice(0, 200));
  }
  return { data, headers: response.headers };
}

// ---- tabs ----

function open(page) {
  for (const tab of document.querySelectorAll(".tab")) {
    const current = tab.dataset.page === page;
    if (current) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
    show($(`page-${tab.dataset.page}`), current);
  }
  show($("key-session"), page !== "keys");
  if (page === "usage" && session.key) loadUsage();
}

// ---- signing in: the secret typed in is checked by the API, then kept in `session` only ----

async function signIn(event, { input, form, who, error }, check) {
  event.preventDefault();
  const secret = $(input).value.trim();
  $(input).value = "";
  say($(error), "");
  if (!secret) {
    say($(error), "Paste it first.");
    return;
  }
  try {
    await check(secret);
    show($(form), false);
    show($(who), true);
  } catch (e) {
    say($(error), `Sign-in failed: ${e.message}`);
  }
}

// An API key is checked with GET /api/usage/status, which counts nothing.
function signInWithKey(event) {
  return signIn(event, { input: "api-key", form: "key-form", who: "key-who", error: "key-error" }, async (key) => {
    const { data } = await call("GET", "/api/usage/status", { key });
    session.key = key;
    $("key-identity").textContent = `Signed in with key ${data.key_id} (${data.tier} tier)`;
    renderUsage(data);
  });
}

function signOutKey() {
  session.key = null;
  show($("key-form"), true);
  show($("key-who"), false);
  show($("usage"), false);
  show($("usage-hint"), true);
  show($("result"), false);
  say($("detect-status"), "");
}

// ---- detect ----

let previewUrl = null;

async function detect(file) {
  say($("detect-error"), "");
  if (!file) return;
  if (!session.key) {
    say($("detect-error"), "Sign in with an API key first: detections count against its quota.");
    return;
  }
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = URL.createObjectURL(file);
  $("detect-status").textContent = `Analysing ${file.name} (${Math.round(file.size / 1024)} KiB)…`;
  const form = new FormData();
  form.append("file", file, file.name);
  let answer;
  try {
    answer = await call("POST", "/api/detect", {
      key: session.key,
      headers: { "x-detection-source": "website" },
      body: form,
    });
  } catch (e) {
    $("detect-status").textContent = "";
    say($("detect-error"), `The detection failed: ${e.message}`);
    return;
  }
  $("detect-status").textContent = `${file.name}: analysed in ${Math.round(answer.data.elapsed_ms)} ms${answer.data.cached ? " (cached)" : ""}.`;
  renderReport(answer.data, answer.headers);
}

const BANDS = [
  [85, "b4"],
  [60, "b3"],
  [40, "b2"],
  [15, "b1"],
  [0, "b0"],
];

const MODULE_ORDER = ["metadata", "provenance", "frequency", "visual", "physics", "ml", "fusion"];

function renderReport(report, headers) {
  show($("result"), true);
  $("score-value").textContent = report.score.toFixed(1);
  const verdict = $("verdict");
  verdict.textContent = report.verdict;
  verdict.className = `verdict ${BANDS.find(([from]) => report.score >= from)[1]}`;
  $("marker").style.left = `${Math.min(100, Math.max(0, report.score))}%`;
  $("presentation").textContent = report.presentation;
  $("confidence").textContent = percent(report.confidence);
  $("uncertainty").textContent = percent(report.uncertainty);
  const remaining = headers.get("x-ratelimit-remaining");
  const limit = headers.get("x-ratelimit-limit");
  const reset = headers.get("x-ratelimit-reset");
  $("quota").textContent = remaining === null ? "unknown" : `${remaining} of ${limit} (resets in ${inSeconds(reset)})`;
  const reasons = clear($("explanations"));
  for (const line of report.explanations) reasons.append(el("li", {}, line));

  const rows = clear($("modules").tBodies[0]);
  const names = Object.keys(report.modules).sort((a, b) => rank(a) - rank(b));
  for (const name of names) {
    const m = report.modules[name];
    const bar = el("span", { class: "meter" }, el("span", { class: "fill" }));
    bar.firstChild.style.width = `${Math.round(m.score * 100)}%`;
    const flags = el("td", { class: "flags" });
    for (const flag of m.flags) flags.append(el("span", { class: "chip" }, flag), " ");
    if (!m.flags.length) flags.append(el("span", { class: "none" }, "none"));
    const findings = el("ul", {});
    for (const line of m.explanations) findings.append(el("li", {}, line));
    rows.append(
      el(
        "tr",
        { "data-module": name, class: m.abstained ? "abstained" : "" },
        el("th", { scope: "row" }, name),
        el("td", { class: "num" }, bar, ` ${m.score.toFixed(2)}`, m.abstained ? el("span", { class: "tag" }, "abstained") : null),
        flags,
        el("td", {}, findings),
      ),
    );
  }

  const g = report.generator;
  $("generator").textContent = g
    ? `${g.family} (confidence ${percent(g.confidence)})${g.tool ? `, written by ${g.tool}` : ""}${g.model ? `, model ${g.model}` : ""}`
    : "No generator could be attributed from the file's metadata.";

  renderC2pa(report.modules.provenance);
  renderPicture(report);
}

function rank(name) {
  const i = MODULE_ORDER.indexOf(name);
  return i < 0 ? MODULE_ORDER.length - 1 : i;
}

const C2PA_WORDS = {
  c2pa_present: "a manifest is present",
  c2pa_valid: "it validates (signature and bindings intact)",
  c2pa_trusted: "its signer is trusted",
  c2pa_invalid: "it failed validation",
  c2pa_unreadable: "it could not be read",
  c2pa_remote_manifest: "only a remote manifest is referenced (not fetched)",
  c2pa_ai_source: "it declares content made by a generative model",
  c2pa_capture_source: "it declares a camera capture",
};

function renderC2pa(provenance) {
  const notes = clear($("c2pa-notes"));
  if (!provenance) {
    $("c2pa").textContent = "Not checked.";
    return;
  }
  const said = provenance.flags.filter((f) => C2PA_WORDS[f]).map((f) => C2PA_WORDS[f]);
  $("c2pa").textContent = said.length ? `C2PA: ${said.join("; ")}.` : "No C2PA manifest.";
  for (const line of provenance.explanations) notes.append(el("li", {}, line));
}

function renderPicture(report) {
  const img = $("preview");
  const overlay = clear($("overlay"));
  const list = clear($("regions"));
  const { width, height } = report.image;
  $("picture-caption").textContent = `${report.image.format.toUpperCase()}, ${width}×${height}, ${Math.round(report.image.bytes / 1024)} KiB`;
  img.onerror = () => {
    $("picture-caption").textContent += ". This browser cannot display the format; the regions are listed below.";
  };
  img.src = previewUrl;
  report.regions.forEach((r, i) => {
    const box = el("div", { class: "region", title: `${r.module}: ${r.score.toFixed(2)}` }, el("span", {}, String(i + 1)));
    box.style.left = `${(100 * r.x) / width}%`;
    box.style.top = `${(100 * r.y) / height}%`;
    box.style.width = `${(100 * r.width) / width}%`;
    box.style.height = `${(100 * r.height) / height}%`;
    box.style.opacity = String(0.45 + 0.55 * Math.min(1, Math.max(0, r.score)));
    overlay.append(box);
    list.append(el("li", {}, `${r.module}, suspicion ${r.score.toFixed(2)}: ${r.width}×${r.height} px at (${r.x}, ${r.y})`));
  });
  if (!report.regions.length) list.append(el("li", { class: "none" }, "No region stands out."));
}

function pickDropped(event) {
  event.preventDefault();
  $("drop").classList.remove("over");
  const files = event.dataTransfer && event.dataTransfer.files;
  if (files && files.length) detect(files[0]);
}

// ---- usage ----

async function loadUsage() {
  say($("usage-error"), "");
  try {
    const { data } = await call("GET", "/api/usage/status", { key: session.key });
    renderUsage(data);
  } catch (e) {
    say($("usage-error"), `Usage could not be read: ${e.message}`);
  }
}

function renderUsage(usage) {
  show($("usage-hint"), false);
  show($("usage"), true);
  $("usage-who").textContent = `Key ${usage.key_id}, ${usage.tier} tier, read at ${when(new Date().toISOString())}`;
  const windows = clear($("windows"));
  for (const name of ["minute", "day", "month"]) {
    const w = usage.windows[name];
    const bar = el("span", { class: "meter wide" }, el("span", { class: "fill" }));
    bar.firstChild.style.width = `${w.limit ? Math.min(100, (100 * w.used) / w.limit) : 100}%`;
    const resetAt = new Date(Date.now() + w.reset * 1000).toISOString();
    windows.append(
      el(
        "div",
        { class: "window", "data-window": name },
        el("h3", {}, `This ${name}`),
        bar,
        el("p", {}, `${w.used} used of ${w.limit}, ${w.remaining} remaining; resets at ${when(resetAt)} (in ${inSeconds(w.reset)})`),
      ),
    );
  }
  const rows = clear($("sources").tBodies[0]);
  const names = new Set(["api", "extension", "extension-local", "website", ...Object.keys(usage.sources.day), ...Object.keys(usage.sources.month)]);
  for (const name of names) {
    rows.append(
      el(
        "tr",
        { "data-source": name },
        el("th", { scope: "row" }, name),
        el("td", { class: "num" }, usage.sources.day[name] || 0),
        el("td", { class: "num" }, usage.sources.month[name] || 0),
      ),
    );
  }
}

// ---- keys (admin token) ----

function signInAdmin(event) {
  return signIn(event, { input: "admin-token", form: "admin-form", who: "admin-who", error: "admin-error" }, async (token) => {
    const { data } = await call("GET", "/admin/keys", { token });
    session.token = token;
    show($("admin"), true);
    renderKeys(data);
  });
}

function signOutAdmin() {
  session.token = null;
  hideOnce();
  clear($("keys").tBodies[0]);
  show($("admin"), false);
  show($("admin-who"), false);
  show($("admin-form"), true);
}

async function refreshKeys() {
  const { data } = await call("GET", "/admin/keys", { token: session.token });
  renderKeys(data);
}

async function adminAction(label, method, path, body) {
  say($("admin-error"), "");
  try {
    const { data } = await call(method, path, { token: session.token, body });
    await refreshKeys();
    return data;
  } catch (e) {
    say($("admin-error"), `${label} failed: ${e.message}`);
    return null;
  }
}

async function createKey(event) {
  event.preventDefault();
  const name = $("new-name").value.trim();
  const tier = $("new-tier").value.trim();
  const issued = await adminAction("Creating the key", "POST", "/admin/keys", { name, tier });
  if (issued) {
    $("new-name").value = "";
    showOnce(`New key ${issued.record.id} (${issued.record.name})`, issued.key);
  }
}

function showOnce(title, key) {
  $("once-title").textContent = title;
  $("once-key").textContent = key;
  $("once-copied").textContent = "";
  show($("once"), true);
}

function hideOnce() {
  $("once-key").textContent = "";
  show($("once"), false);
}

async function copyOnce() {
  const key = $("once-key").textContent;
  try {
    await navigator.clipboard.writeText(key);
    $("once-copied").textContent = "Copied.";
  } catch (_) {
    const range = document.createRange();
    range.selectNodeContents($("once-key"));
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    $("once-copied").textContent = document.execCommand("copy") ? "Copied." : "Selected: press Ctrl+C to copy.";
  }
}

function button(label, action, attrs) {
  const b = el("button", { type: "button", ...(attrs || {}) }, label);
  b.addEventListener("click", action);
  return b;
}

function renderKeys(keys) {
  const rows = clear($("keys").tBodies[0]);
  if (!keys.length) rows.append(el("tr", {}, el("td", { colspan: "9", class: "none" }, "No keys yet.")));
  for (const k of keys) {
    const path = `/admin/keys/${encodeURIComponent(k.id)}`;
    const actions = el("td", { class: "actions" });
    if (k.state !== "revoked") {
      actions.append(
        button("Rotate", async () => {
          const issued = await adminAction("Rotating the key", "POST", `${path}/rotate`);
          if (issued) showOnce(`Key ${k.id} rotated: its new secret`, issued.key);
        }),
        k.state === "active"
          ? button("Disable", () => adminAction("Disabling the key", "POST", `${path}/disable`))
          : button("Enable", () => adminAction("Enabling the key", "POST", `${path}/enable`)),
        button(
          "Revoke",
          (event) => {
            const b = event.currentTarget;
            if (b.dataset.armed) adminAction("Revoking the key", "POST", `${path}/revoke`);
            else {
              b.dataset.armed = "yes";
              b.textContent = "Confirm revoke";
              b.classList.add("danger");
            }
          },
          { class: "revoke" },
        ),
      );
      const tier = el("input", { value: k.tier, list: "tiers", "aria-label": `Tier of ${k.id}`, class: "tier" });
      actions.append(tier, button("Set tier", () => adminAction("Changing the tier", "PUT", `${path}/tier`, { tier: tier.value.trim() })));
    }
    rows.append(
      el(
        "tr",
        { "data-key": k.id, class: k.state },
        el("td", {}, el("code", {}, k.id)),
        el("td", {}, k.name),
        el("td", { class: "tier-name" }, k.tier),
        el("td", { class: "state" }, k.state),
        el("td", {}, el("code", {}, k.account)),
        el("td", {}, when(k.created_at)),
        el("td", {}, k.rotated_at ? when(k.rotated_at) : "—"),
        el("td", {}, when(k.last_used_at)),
        actions,
      ),
    );
  }
}

// ---- wiring ----

document.addEventListener("DOMContentLoaded", () => {
  for (const tab of document.querySelectorAll(".tab")) tab.addEventListener("click", () => open(tab.dataset.page));
  $("key-form").addEventListener("submit", signInWithKey);
  $("key-signout").addEventListener("click", signOutKey);
  $("file").addEventListener("change", (e) => {
    const file = e.target.files[0];
    e.target.value = "";
    detect(file);
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", pickDropped);
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") $("file").click();
  });
  $("usage-refresh").addEventListener("click", loadUsage);
  $("admin-form").addEventListener("submit", signInAdmin);
  $("admin-signout").addEventListener("click", signOutAdmin);
  $("create-form").addEventListener("submit", createKey);
  $("once-copy").addEventListener("click", copyOnce);
  $("once-done").addEventListener("click", hideOnce);
  document.body.dataset.ready = "yes";
});
