// The vidgate operator console: one page, hash routes (#/accounts, #/tasks, ...),
// talking only to this server's /admin API with the admin key kept in this tab's
// sessionStorage. Every string from a client or an upstream is put on the page
// as text (textContent), never parsed as HTML; the page's CSP forbids inline
// script and style, so nothing here uses either.
"use strict";

const KEY = "vidgate.admin";
const $ = (id) => document.getElementById(id);
const view = $("view");
let taskCache = new Map();

// ---- small helpers ---------------------------------------------------------

// h("td", {class: "num"}, "text", node, ...): an element; strings become text nodes.
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "value") el.value = v;
    else if (k === "checked") el.checked = !!v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

const credits = (units) => (Number(units) / 10000).toLocaleString(undefined, { maximumFractionDigits: 4 });
const num = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString());
const secs = (unix) => (unix ? new Date(unix * 1000).toISOString().replace("T", " ").slice(0, 19) : "–");
const millis = (ms) => (ms ? new Date(ms).toISOString().replace("T", " ").slice(0, 19) : "–");
const usd = (v) => "$" + Number(v).toFixed(3);
const badge = (text) => h("span", { class: "badge " + String(text) }, String(text));

function announce(text) {
  const a = $("announce");
  a.textContent = "";
  setTimeout(() => { a.textContent = text; }, 30);
}

async function api(path, opts = {}) {
  const headers = Object.assign({ Authorization: "Bearer " + (sessionStorage.getItem(KEY) || "") }, opts.headers || {});
  if (opts.json !== undefined) {
    headers["Content-Type"] = "application/json";
    opts = Object.assign({}, opts, { body: JSON.stringify(opts.json) });
  }
  const resp = await fetch(path, Object.assign({}, opts, { headers }));
  const text = await resp.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = { error: { message: text } }; }
  if (!resp.ok) {
    const e = new Error((body && body.error && body.error.message) || resp.statusText);
    e.status = resp.status;
    e.param = body && body.error && body.error.param;
    if (resp.status === 401) signOut("The admin key was refused.");
    throw e;
  }
  return body;
}

function errorBox() { return h("p", { class: "err", role: "alert" }); }

function table(headers, rows, empty) {
  if (!rows.length) return h("p", { class: "muted" }, empty || "Nothing yet.");
  return h("table", {},
    h("thead", {}, h("tr", {}, headers.map((x) => (typeof x === "string" ? h("th", {}, x) : h("th", { class: x.cls }, x.text))))),
    h("tbody", {}, rows));
}

function field(label, input) { return h("div", {}, h("label", { for: input.id }, label), input); }

let uid = 0;
function input(attrs) { return h("input", Object.assign({ id: "f" + (++uid) }, attrs)); }

function page(title, ...children) {
  view.replaceChildren(h("h2", {}, title), ...children);
  document.title = title + " · vidgate console";
}

// ---- sign in ---------------------------------------------------------------

function signOut(message) {
  sessionStorage.removeItem(KEY);
  $("nav").classList.add("hidden");
  view.replaceChildren();
  $("signin").classList.remove("hidden");
  $("signinErr").textContent = message || "";
  $("adminKey").focus();
}

$("signinForm").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const key = $("adminKey").value.trim();
  if (!key) return;
  sessionStorage.setItem(KEY, key);
  try {
    await api("/admin/accounts?limit=1");
  } catch (e) {
    signOut(e.status === 401 ? "That admin key was refused." : e.message);
    return;
  }
  $("adminKey").value = "";
  start();
});
$("signOut").addEventListener("click", () => signOut());

function start() {
  $("signin").classList.add("hidden");
  $("nav").classList.remove("hidden");
  if (!location.hash || location.hash === "#" || location.hash === "#/") location.hash = "#/accounts";
  else route();
}

// ---- routing ---------------------------------------------------------------

function route() {
  if (!sessionStorage.getItem(KEY)) { signOut(); return; }
  const hash = location.hash.replace(/^#\/?/, "");
  const [path, query] = hash.split("?");
  const parts = path.split("/").map(decodeURIComponent);
  const params = new URLSearchParams(query || "");
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("on", a.dataset.page === parts[0]);
  const pages = {
    accounts: () => (parts[1] ? accountPage(parts[1]) : accountsPage(params)),
    tasks: () => (parts[1] ? taskPage(parts[1]) : tasksPage(params)),
    providers: providersPage,
    margin: () => marginPage(params),
    codes: codesPage,
    audit: () => auditPage(params),
  };
  const render = pages[parts[0]] || (() => { location.hash = "#/accounts"; });
  Promise.resolve(render()).catch((e) => {
    if (e.status !== 401) view.replaceChildren(h("p", { class: "err", role: "alert" }, e.message));
  });
  view.focus({ preventScroll: true });
}
window.addEventListener("hashchange", route);

// ---- accounts --------------------------------------------------------------

async function accountsPage(params) {
  const search = params.get("q") || "";
  const q = input({ type: "search", value: search, placeholder: "id or part of a name", "aria-label": "Search accounts" });
  const searchForm = h("form", { class: "inline", role: "search" }, q, h("button", { type: "submit" }, "Search"));
  searchForm.addEventListener("submit", (ev) => { ev.preventDefault(); location.hash = "#/accounts?q=" + encodeURIComponent(q.value.trim()); });

  const name = input({ type: "text", maxlength: 100, required: true, placeholder: "Acme Studio" });
  const amount = input({ type: "text", inputmode: "decimal", placeholder: "100" });
  const err = errorBox();
  const made = h("div");
  const create = h("form", { class: "inline" }, field("Name", name), field("Starting credits", amount), h("button", { type: "submit", class: "primary" }, "Create account"));
  create.addEventListener("submit", async (ev) => {
    ev.preventDefault(); err.textContent = "";
    const body = { name: name.value.trim() };
    if (amount.value.trim()) body.credits = amount.value.trim();
    try {
      const r = await api("/admin/accounts", { method: "POST", json: body });
      made.replaceChildren(secretBox("API key of " + r.account.name, r.api_key));
      announce("Account created.");
      await list();
    } catch (e) { err.textContent = e.message; }
  });

  const listBox = h("div");
  async function list() {
    const accounts = await api("/admin/accounts?limit=1000" + (search ? "&search=" + encodeURIComponent(search) : ""));
    listBox.replaceChildren(table(
      ["Name", "Id", { text: "Remaining", cls: "num" }, { text: "Held", cls: "num" }, { text: "Used", cls: "num" }, "State", "Created"],
      accounts.map((a) => h("tr", { class: "click", "data-account": a.id, onclick: () => { location.hash = "#/accounts/" + encodeURIComponent(a.id); } },
        h("td", {}, h("a", { href: "#/accounts/" + encodeURIComponent(a.id) }, a.name)),
        h("td", { class: "mono" }, a.id),
        h("td", { class: "num" }, credits(a.remaining_credits * 10000)),
        h("td", { class: "num" }, credits(a.held_credits * 10000)),
        h("td", { class: "num" }, credits(a.used_credits * 10000)),
        h("td", {}, badge(a.disabled ? "disabled" : "active")),
        h("td", {}, secs(a.created_at)))),
      search ? "No account matches." : "No accounts yet."));
  }
  page("Accounts", h("section", { class: "card" }, searchForm), h("section", { class: "card" }, h("h3", {}, "New account"), create, err, made), h("section", { class: "card" }, listBox));
  await list();
}

function secretBox(title, secret) {
  return h("div", { class: "secret", role: "status" }, h("b", {}, title + " (shown once): "), h("code", { class: "mono secret-value" }, secret));
}

async function accountPage(id) {
  const acct = await api("/admin/accounts/" + encodeURIComponent(id));
  const summary = h("div", { class: "grid" },
    stat("Remaining", credits(acct.remaining_credits * 10000) + " credits"),
    stat("Held", credits(acct.held_credits * 10000)),
    stat("Used", credits(acct.used_credits * 10000)),
    stat("State", acct.disabled ? "disabled" : "active"),
    stat("Group", acct.user_group));

  const err = errorBox();
  const grantAmount = input({ type: "text", inputmode: "decimal", required: true, placeholder: "25 or -5" });
  const grantNote = input({ type: "text", maxlength: 500, placeholder: "why" });
  const grant = h("form", { class: "inline" }, field("Credits", grantAmount), field("Note", grantNote), h("button", { type: "submit", class: "primary" }, "Grant"));
  grant.addEventListener("submit", async (ev) => {
    ev.preventDefault(); err.textContent = "";
    try {
      const body = { credits: grantAmount.value.trim() };
      if (grantNote.value.trim()) body.note = grantNote.value.trim();
      await api("/admin/accounts/" + encodeURIComponent(id) + "/credits", { method: "POST", json: body });
      announce("Credits granted."); accountPage(id);
    } catch (e) { err.textContent = e.message; }
  });
  const toggle = h("button", { type: "button", class: acct.disabled ? "" : "danger", id: "toggleAccount" }, acct.disabled ? "Enable account" : "Disable account");
  toggle.addEventListener("click", async () => {
    err.textContent = "";
    try {
      await api("/admin/accounts/" + encodeURIComponent(id) + (acct.disabled ? "/enable" : "/disable"), { method: "POST", json: {} });
      announce(acct.disabled ? "Account enabled." : "Account disabled: its keys stop working."); accountPage(id);
    } catch (e) { err.textContent = e.message; }
  });

  const keys = await api("/admin/accounts/" + encodeURIComponent(id) + "/keys");
  const keysBox = h("div");
  keysBox.append(table(["Name", "Prefix", "Models", { text: "rpm", cls: "num" }, { text: "Concurrent", cls: "num" }, "Budget", "Manages keys", "State", ""],
    keys.map((k) => keyRow(k, () => accountPage(id)))));
  const made = h("div");
  const keyName = input({ type: "text", maxlength: 100, placeholder: "ci" });
  const keyErr = errorBox();
  const newKey = h("form", { class: "inline" }, field("Key name", keyName), h("button", { type: "submit" }, "New key"));
  newKey.addEventListener("submit", async (ev) => {
    ev.preventDefault(); keyErr.textContent = "";
    try {
      const body = keyName.value.trim() ? { name: keyName.value.trim() } : {};
      const r = await api("/admin/accounts/" + encodeURIComponent(id) + "/keys", { method: "POST", json: body });
      made.replaceChildren(secretBox("API key " + r.key.name, r.api_key));
      announce("Key created.");
      const fresh = await api("/admin/accounts/" + encodeURIComponent(id) + "/keys");
      keysBox.replaceChildren(table(["Name", "Prefix", "Models", { text: "rpm", cls: "num" }, { text: "Concurrent", cls: "num" }, "Budget", "Manages keys", "State", ""],
        fresh.map((k) => keyRow(k, () => accountPage(id)))));
    } catch (e) { keyErr.textContent = e.message; }
  });

  const usage = await api("/admin/usage?group_by=day&account=" + encodeURIComponent(id));
  const ledger = await api("/admin/ledger?limit=20&account=" + encodeURIComponent(id));
  const audit = await api("/admin/audit?limit=20&account=" + encodeURIComponent(id));
  page(acct.name,
    h("p", { class: "mono muted" }, acct.id),
    h("section", { class: "card" }, summary, h("h3", {}, "Credits and access"), grant, h("div", { class: "row-actions" }, toggle), err),
    h("section", { class: "card" }, h("h3", {}, "Keys"), keysBox, newKey, keyErr, made),
    h("section", { class: "card" }, h("h3", {}, "Usage, last 30 days"), usageTable(usage)),
    h("section", { class: "card" }, h("h3", {}, "Ledger, newest first"), ledgerTable(ledger.data)),
    h("section", { class: "card" }, h("h3", {}, "Audit"), auditTable(audit.data)));
}

function stat(label, value) { return h("div", { class: "stat" }, h("span", {}, label), h("b", {}, value)); }

function budgetText(k) {
  if (k.budget_credits === null || k.budget_credits === undefined) return "none";
  return credits(k.budget_used_credits * 10000) + " / " + credits(k.budget_credits * 10000) + " per " + k.budget_period;
}

function keyRow(k, refresh) {
  const tr = h("tr", { "data-key": k.id },
    h("td", {}, k.name),
    h("td", { class: "mono" }, k.prefix),
    h("td", {}, k.allowed_models ? k.allowed_models.join(", ") : "all"),
    h("td", { class: "num" }, num(k.rpm)),
    h("td", { class: "num" }, num(k.max_concurrent)),
    h("td", {}, budgetText(k)),
    h("td", {}, k.manage_keys ? "yes" : "no"),
    h("td", {}, badge(k.revoked ? "revoked" : "active")));
  const actions = h("td", { class: "row-actions" });
  if (!k.revoked) {
    actions.append(h("button", { type: "button", onclick: () => tr.after(limitsRow(k, refresh)) }, "Limits"));
    actions.append(h("button", { type: "button", class: "danger", onclick: async () => {
      if (!confirm("Revoke key " + k.name + "? It stops working at once.")) return;
      try { await api("/admin/keys/" + encodeURIComponent(k.id) + "/revoke", { method: "POST", json: {} }); announce("Key revoked."); refresh(); }
      catch (e) { announce(e.message); }
    } }, "Revoke"));
  }
  tr.append(actions);
  return tr;
}

// A form under a key's row: every field sent, an empty one as null (cleared).
function limitsRow(k, refresh) {
  const rpm = input({ type: "number", min: 1, value: k.rpm ?? "", "aria-label": "rpm", placeholder: "none" });
  const conc = input({ type: "number", min: 1, value: k.max_concurrent ?? "", "aria-label": "max concurrent", placeholder: "none" });
  const budget = input({ type: "text", inputmode: "decimal", value: k.budget_credits ?? "", "aria-label": "budget credits", placeholder: "none" });
  const period = h("select", { id: "f" + (++uid), "aria-label": "budget period" }, ["day", "month", "total"].map((p) => h("option", { value: p }, p)));
  period.value = k.budget_period || "total";
  const models = input({ type: "text", value: k.allowed_models ? k.allowed_models.join(", ") : "", placeholder: "all", "aria-label": "allowed models" });
  const err = errorBox();
  const form = h("form", { class: "inline limits" }, field("rpm", rpm), field("Max concurrent", conc), field("Budget (credits)", budget), field("Period", period), field("Models (comma-separated)", models), h("button", { type: "submit", class: "primary" }, "Save limits"), err);
  const row = h("tr", {}, h("td", { colspan: 9 }, form));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault(); err.textContent = "";
    const intOrNull = (v) => (v.trim() === "" ? null : Number(v));
    const list = models.value.split(",").map((m) => m.trim()).filter(Boolean);
    const body = {
      rpm: intOrNull(rpm.value),
      max_concurrent: intOrNull(conc.value),
      budget_credits: budget.value.trim() === "" ? null : budget.value.trim(),
      allowed_models: list.length ? list : null,
    };
    if (body.budget_credits !== null) body.budget_period = period.value;
    try { await api("/admin/keys/" + encodeURIComponent(k.id), { method: "PATCH", json: body }); announce("Limits saved."); refresh(); }
    catch (e) { err.textContent = (e.param ? e.param + ": " : "") + e.message; }
  });
  return row;
}

function usageTable(u) {
  return table([u.group_by, { text: "Tasks", cls: "num" }, { text: "Credits charged", cls: "num" }, { text: "Video seconds", cls: "num" }],
    u.data.map((l) => h("tr", {}, h("td", { class: "mono" }, l.group), h("td", { class: "num" }, num(l.tasks)), h("td", { class: "num" }, credits(l.credits_charged)), h("td", { class: "num" }, num(l.video_seconds)))),
    "No charges in this range.");
}

function ledgerTable(entries) {
  return table(["Time", "Kind", { text: "Credits", cls: "num" }, "Task", "Note"],
    entries.map((e) => h("tr", {}, h("td", {}, millis(e.created_at)), h("td", {}, badge(e.kind)), h("td", { class: "num" }, credits(e.amount)),
      h("td", { class: "mono" }, e.task_id ? h("a", { href: "#/tasks/" + encodeURIComponent(e.task_id) }, e.task_id) : "–"), h("td", {}, e.note || ""))));
}

// ---- tasks -----------------------------------------------------------------

async function tasksPage(params) {
  const status = h("select", { id: "fStatus", "aria-label": "Status" }, ["", "pending", "processing", "completed", "failed"].map((s) => h("option", { value: s }, s || "any status")));
  status.value = params.get("status") || "";
  const model = input({ type: "text", value: params.get("model") || "", placeholder: "any model", "aria-label": "Model" });
  const provider = input({ type: "text", value: params.get("provider") || "", placeholder: "any provider", "aria-label": "Provider" });
  const account = input({ type: "text", value: params.get("account") || "", placeholder: "any account", "aria-label": "Account" });
  const form = h("form", { class: "inline", id: "taskFilters" }, field("Status", status), field("Model", model), field("Provider", provider), field("Account", account), h("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const p = new URLSearchParams();
    for (const [k, el] of [["status", status], ["model", model], ["provider", provider], ["account", account]]) if (el.value.trim()) p.set(k, el.value.trim());
    location.hash = "#/tasks" + (p.toString() ? "?" + p.toString() : "");
  });
  const body = h("tbody");
  const more = h("button", { type: "button", class: "hidden" }, "More");
  const tbl = h("table", {}, h("thead", {}, h("tr", {}, ["Created", "Task", "Account", "Model", "Status", "Provider", "Prompt"].map((x) => h("th", {}, x)))), body);
  let cursor = null;
  async function load() {
    const p = new URLSearchParams(params);
    p.set("limit", "50");
    if (cursor) p.set("cursor", cursor);
    const list = await api("/admin/tasks?" + p.toString());
    for (const t of list.data) {
      taskCache.set(t.id, t);
      body.append(h("tr", { class: "click", "data-task": t.id, "data-status": t.status, onclick: () => { location.hash = "#/tasks/" + encodeURIComponent(t.id); } },
        h("td", {}, secs(t.created)),
        h("td", { class: "mono" }, h("a", { href: "#/tasks/" + encodeURIComponent(t.id) }, t.id)),
        h("td", { class: "mono" }, t.account_id),
        h("td", {}, t.model),
        h("td", {}, badge(t.status)),
        h("td", {}, t.provider || "–"),
        h("td", { class: "prompt" }, t.prompt || "")));
    }
    cursor = list.next_cursor;
    more.classList.toggle("hidden", !cursor);
    if (!body.children.length) body.append(h("tr", {}, h("td", { colspan: 7, class: "muted" }, "No task matches.")));
  }
  more.addEventListener("click", () => load().catch((e) => announce(e.message)));
  page("Tasks", h("section", { class: "card" }, form), h("section", { class: "card" }, tbl, h("div", { class: "pager" }, more)));
  await load();
}

async function taskPage(id) {
  const [attempts, callbacks] = await Promise.all([
    api("/admin/tasks/" + encodeURIComponent(id) + "/attempts"),
    api("/admin/tasks/" + encodeURIComponent(id) + "/callbacks"),
  ]);
  const t = taskCache.get(id);
  const facts = h("div", { class: "grid" }, stat("Status", attempts.status), stat("Provider", attempts.provider || "–"));
  const details = h("section", { class: "card" }, facts);
  if (t) {
    facts.append(stat("Model", t.model), stat("Account", t.account_id), stat("Held", credits(t.usage.credits_reserved)), stat("Charged", t.usage.credits_charged === undefined ? "–" : credits(t.usage.credits_charged)));
    if (t.prompt) details.append(h("h3", {}, "Prompt"), h("p", { class: "prompt" }, t.prompt));
    if (t.error) details.append(h("h3", {}, "Error"), h("p", { class: "err task-error" }, t.error.code + ": " + t.error.message));
    if (t.results && t.results[0] && /^(https?:\/\/|\/)/.test(t.results[0])) details.append(h("h3", {}, "Result"), h("video", { controls: true, preload: "metadata", src: t.results[0], class: "result" }));
  }
  const timeline = attempts.attempts.length
    ? h("ol", { class: "timeline", id: "attempts" }, attempts.attempts.map((a) => h("li", { class: a.status },
        h("b", {}, "#" + a.seq + " " + a.provider), " ", badge(a.status), " ",
        h("span", { class: "muted" }, a.upstream_model + (a.upstream_id ? " · " + a.upstream_id : "")),
        h("div", { class: "muted" }, millis(a.created_at) + (a.finished_at ? " → " + millis(a.finished_at) + " (" + ((a.finished_at - a.created_at) / 1000).toFixed(1) + " s)" : " → running") + " · " + a.polls + " polls · " + usd(a.cost_usd)),
        a.error_code || a.error_message ? h("div", { class: "err" }, (a.error_code || "") + (a.error_message ? ": " + a.error_message : "")) : null)))
    : h("p", { class: "muted" }, "No upstream attempts: the built-in renderer ran it, or it has not started.");
  const deliveries = callbacks.data.length
    ? h("div", { id: "callbacks" }, callbacks.data.map((d) => h("div", { class: "card" },
        h("div", {}, badge(d.status), " ", h("span", { class: "mono" }, d.url)),
        h("div", { class: "muted mono" }, "webhook-id " + d.id + (d.next_attempt_at ? " · next " + millis(d.next_attempt_at) : "")),
        h("ol", { class: "timeline" }, d.attempts.map((a) => h("li", { class: a.status_code >= 200 && a.status_code < 300 ? "delivered" : "failed" },
          millis(a.attempted_at) + " · " + (a.status_code ? "HTTP " + a.status_code : "no answer") + " · " + a.latency_ms + " ms",
          a.error ? h("div", { class: "err" }, a.error) : null))))))
    : h("p", { class: "muted" }, "No callbacks.");
  page("Task", h("p", { class: "mono muted" }, id), details,
    h("section", { class: "card" }, h("h3", {}, "Upstream attempts"), timeline),
    h("section", { class: "card" }, h("h3", {}, "Callback deliveries"), deliveries));
}

// ---- providers -------------------------------------------------------------

async function providersPage() {
  const list = await api("/admin/providers");
  page("Providers", h("section", { class: "card" }, table(
    ["Provider", "Breaker", { text: "Recent calls", cls: "num" }, { text: "Recent errors", cls: "num" }, { text: "Times opened", cls: "num" },
      { text: "Attempts 24 h", cls: "num" }, { text: "Succeeded", cls: "num" }, { text: "Failed", cls: "num" }, { text: "Mean latency", cls: "num" }, { text: "Max latency", cls: "num" }],
    list.map((p) => h("tr", { "data-provider": p.provider },
      h("td", {}, p.provider), h("td", {}, badge(p.state)), h("td", { class: "num" }, num(p.recent_calls)), h("td", { class: "num" }, num(p.recent_errors)),
      h("td", { class: "num" }, num(p.times_opened)), h("td", { class: "num" }, num(p.attempts_24h)), h("td", { class: "num" }, num(p.succeeded_24h)),
      h("td", { class: "num" }, num(p.failed_24h)), h("td", { class: "num" }, p.mean_latency_ms === null ? "–" : (p.mean_latency_ms / 1000).toFixed(1) + " s"),
      h("td", { class: "num" }, p.max_latency_ms === null ? "–" : (p.max_latency_ms / 1000).toFixed(1) + " s"))),
    "No upstream providers are configured: the built-in renderer serves every model.")));
}

// ---- margin ----------------------------------------------------------------

async function marginPage(params) {
  const from = input({ type: "date", value: params.get("from") || "", "aria-label": "From" });
  const to = input({ type: "date", value: params.get("to") || "", "aria-label": "To" });
  const form = h("form", { class: "inline" }, field("From", from), field("To (exclusive)", to), h("button", { type: "submit" }, "Show"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const p = new URLSearchParams();
    if (from.value) p.set("from", from.value);
    if (to.value) p.set("to", to.value);
    location.hash = "#/margin" + (p.toString() ? "?" + p.toString() : "");
  });
  const q = new URLSearchParams();
  for (const k of ["from", "to"]) if (params.get(k)) q.set(k, params.get(k));
  const r = await api("/admin/reports/margin" + (q.toString() ? "?" + q.toString() : ""));
  const days = r.days;
  page("Margin",
    h("section", { class: "card" }, form),
    h("section", { class: "card" }, h("div", { class: "grid" }, stat("Revenue (all time)", usd(r.total_revenue_usd)), stat("Upstream cost", usd(r.total_upstream_cost_usd)), stat("Margin", usd(r.total_revenue_usd - r.total_upstream_cost_usd)))),
    h("section", { class: "card" }, h("h3", {}, "By day"), chart(days),
      table(["Day", { text: "Tasks", cls: "num" }, { text: "Credits", cls: "num" }, { text: "Revenue", cls: "num" }, { text: "Cost", cls: "num" }, { text: "Margin", cls: "num" }],
        days.map((d) => h("tr", {}, h("td", {}, d.date), h("td", { class: "num" }, num(d.tasks)), h("td", { class: "num" }, credits(d.credits_charged)), h("td", { class: "num" }, usd(d.revenue_usd)), h("td", { class: "num" }, usd(d.upstream_cost_usd)), h("td", { class: "num" }, usd(d.margin_usd)))),
        "No completed tasks in this range.")),
    h("section", { class: "card" }, h("h3", {}, "By model and provider"),
      table(["Model", "Provider", { text: "Tasks", cls: "num" }, { text: "Credits", cls: "num" }, { text: "Revenue", cls: "num" }, { text: "Cost", cls: "num" }, { text: "Margin", cls: "num" }],
        r.data.map((l) => h("tr", {}, h("td", {}, l.model), h("td", {}, l.provider), h("td", { class: "num" }, num(l.tasks)), h("td", { class: "num" }, credits(l.credits_charged * 10000)), h("td", { class: "num" }, usd(l.revenue_usd)), h("td", { class: "num" }, usd(l.upstream_cost_usd)), h("td", { class: "num" }, usd(l.margin_usd)))))));
}

// Revenue and cost bars per day with the margin as a line, drawn in SVG.
function chart(days) {
  const W = 760, H = 240, L = 56, R = 12, T = 14, B = 34;
  const box = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": "Revenue, upstream cost and margin by day", id: "marginChart" });
  if (!days.length) {
    box.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "No data in this range"));
    return h("div", {}, box);
  }
  const top = Math.max(0.001, ...days.map((d) => Math.max(d.revenue_usd, d.upstream_cost_usd, d.margin_usd)));
  const low = Math.min(0, ...days.map((d) => d.margin_usd));
  const y = (v) => T + (H - T - B) * (1 - (v - low) / (top - low));
  const slot = (W - L - R) / days.length;
  const bar = Math.max(2, Math.min(24, slot / 2.5));
  box.append(svg("line", { x1: L, x2: W - R, y1: y(0), y2: y(0), class: "axis" }));
  for (const v of [top, top / 2, low]) box.append(svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, usd(v)));
  const points = [];
  days.forEach((d, i) => {
    const x = L + slot * i + slot / 2;
    box.append(svg("rect", { x: x - bar, y: y(d.revenue_usd), width: bar, height: Math.max(0, y(0) - y(d.revenue_usd)), class: "rev" }, svg("title", {}, d.date + " revenue " + usd(d.revenue_usd))));
    box.append(svg("rect", { x: x, y: y(d.upstream_cost_usd), width: bar, height: Math.max(0, y(0) - y(d.upstream_cost_usd)), class: "cost" }, svg("title", {}, d.date + " cost " + usd(d.upstream_cost_usd))));
    points.push(x + "," + y(d.margin_usd));
    box.append(svg("circle", { cx: x, cy: y(d.margin_usd), r: 3, class: "dot" }, svg("title", {}, d.date + " margin " + usd(d.margin_usd))));
    if (days.length <= 14 || i % Math.ceil(days.length / 10) === 0) box.append(svg("text", { x: x, y: H - 12, "text-anchor": "middle" }, d.date.slice(5)));
  });
  box.append(svg("polyline", { points: points.join(" "), class: "margin" }));
  return h("div", {}, h("div", { class: "legend" }, h("span", {}, h("i", { class: "rev" }), "revenue"), h("span", {}, h("i", { class: "cost" }), "upstream cost"), h("span", {}, h("i", { class: "margin" }), "margin")), box);
}

// ---- top-up codes ----------------------------------------------------------

async function codesPage() {
  const value = input({ type: "text", inputmode: "decimal", required: true, placeholder: "50" });
  const count = input({ type: "number", min: 1, max: 1000, value: 10 });
  const uses = input({ type: "number", min: 1, value: 1 });
  const expires = input({ type: "date" });
  const note = input({ type: "text", maxlength: 200 });
  const err = errorBox();
  const out = h("div");
  const form = h("form", { class: "inline" }, field("Credits per use", value), field("Codes", count), field("Uses per code", uses), field("Expires (UTC, optional)", expires), field("Note", note), h("button", { type: "submit", class: "primary" }, "Make codes"));
  const listBox = h("div");
  async function list() {
    const batches = await api("/admin/codes");
    listBox.replaceChildren(table(["Created", "Batch", { text: "Credits", cls: "num" }, { text: "Codes", cls: "num" }, { text: "Uses each", cls: "num" }, { text: "Redeemed", cls: "num" }, "Expires", "Note"],
      batches.data.map((b) => h("tr", { "data-batch": b.id }, h("td", {}, secs(b.created_at)), h("td", { class: "mono" }, b.id), h("td", { class: "num" }, credits(b.value)), h("td", { class: "num" }, num(b.count)),
        h("td", { class: "num" }, num(b.uses_per_code)), h("td", { class: "num" }, num(b.redeemed)), h("td", {}, b.expires_at ? secs(b.expires_at) : "never"), h("td", {}, b.note || ""))),
      "No codes yet."));
  }
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault(); err.textContent = "";
    const body = { value: value.value.trim(), count: Number(count.value), uses_per_code: Number(uses.value) };
    if (expires.value) body.expires_at = Math.floor(Date.parse(expires.value + "T00:00:00Z") / 1000);
    if (note.value.trim()) body.note = note.value.trim();
    try {
      const r = await api("/admin/codes", { method: "POST", json: body });
      out.replaceChildren(h("div", { class: "secret" }, h("b", {}, r.codes.length + " codes (shown once; only their hashes are kept):"),
        h("textarea", { readonly: true, id: "newCodes", "aria-label": "New codes" }, r.codes.join("\n"))));
      announce(r.codes.length + " codes made.");
      await list();
    } catch (e) { err.textContent = (e.param ? e.param + ": " : "") + e.message; }
  });
  page("Top-up codes", h("section", { class: "card" }, form, err, out), h("section", { class: "card" }, listBox));
  await list();
}

// ---- audit -----------------------------------------------------------------

function auditTable(rows) {
  const json = (v) => (v === null || v === undefined ? "" : JSON.stringify(v));
  return table(["Time", "Actor", "Action", "Target", "Source", "Before", "After"],
    rows.map((r) => h("tr", { "data-action": r.action }, h("td", {}, millis(r.created_at)), h("td", { class: "mono" }, r.actor), h("td", {}, r.action), h("td", { class: "mono" }, r.target),
      h("td", { class: "mono" }, r.source), h("td", {}, h("pre", {}, json(r.before))), h("td", {}, h("pre", {}, json(r.after))))),
    "Nothing recorded yet.");
}

async function auditPage(params) {
  const account = input({ type: "text", value: params.get("account") || "", placeholder: "any account", "aria-label": "Account" });
  const form = h("form", { class: "inline" }, field("Account", account), h("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (ev) => { ev.preventDefault(); location.hash = "#/audit" + (account.value.trim() ? "?account=" + encodeURIComponent(account.value.trim()) : ""); });
  const box = h("div");
  const more = h("button", { type: "button", class: "hidden" }, "More");
  let rows = [];
  let cursor = null;
  async function load() {
    const p = new URLSearchParams({ limit: "100" });
    if (params.get("account")) p.set("account", params.get("account"));
    if (cursor) p.set("cursor", cursor);
    const r = await api("/admin/audit?" + p.toString());
    rows = rows.concat(r.data);
    cursor = r.next_cursor;
    box.replaceChildren(auditTable(rows));
    more.classList.toggle("hidden", !cursor);
  }
  more.addEventListener("click", () => load().catch((e) => announce(e.message)));
  page("Audit log", h("section", { class: "card" }, form), h("section", { class: "card" }, box, h("div", { class: "pager" }, more)));
  await load();
}

// ---- start -----------------------------------------------------------------

if (sessionStorage.getItem(KEY)) start(); else signOut();
