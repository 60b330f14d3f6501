// The vidgate playground: try a model in the browser with an API key kept in
// this browser's local storage. Everything a server or a user supplied is put on
// the page as text (textContent), never as HTML. Form errors live next to their
// field (a shot's next to the shot); a task's error stays in the history until
// the task leaves it; status changes are announced to screen readers.
"use strict";

const $ = (id) => document.getElementById(id);
const MAX = 10 * 1024 * 1024;
const PROMPTS = "vidgate.prompts";
const state = {
  key: localStorage.getItem("vidgate.key") || "",
  models: [],
  images: { start: null, end: null, frontal: null },
  refs: [],
  quality: "720p", sound: "off", shotType: "customize",
  pollDelay: 1000, timer: null,
  statuses: new Map(),
  elements: [],
};

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

function announce(text) {
  const a = $("announce");
  a.textContent = "";
  setTimeout(() => { a.textContent = text; }, 30);
}

async function api(path, opts = {}) {
  const headers = Object.assign({ Authorization: "Bearer " + state.key }, opts.headers || {});
  const resp = await fetch(path, Object.assign({}, opts, { headers }));
  const text = await resp.text();
  let body = null;
  try { body = text ? JSON.parse(text) : null; } catch (_) { body = { error: { message: text } }; }
  if (!resp.ok) {
    const e = new Error((body && body.error && body.error.message) || resp.statusText);
    e.status = resp.status; e.param = body && body.error && body.error.param;
    throw e;
  }
  return body;
}

// ---- prompts remembered for the history (the task object carries none) ----

function rememberPrompt(id, text) {
  let saved = {};
  try { saved = JSON.parse(localStorage.getItem(PROMPTS) || "{}"); } catch (_) { saved = {}; }
  saved[id] = text;
  const ids = Object.keys(saved);
  for (const old of ids.slice(0, Math.max(0, ids.length - 200))) delete saved[old];
  localStorage.setItem(PROMPTS, JSON.stringify(saved));
}
function promptOf(id) {
  try { return JSON.parse(localStorage.getItem(PROMPTS) || "{}")[id] || ""; } catch (_) { return ""; }
}

// ---- errors next to their fields --------------------------------------------

// Only the form's own errors: a task's error in the history is not the form's.
function clearErrors() {
  document.querySelectorAll("main .err[data-param], #formErr").forEach((e) => (e.textContent = ""));
}

function errorSlot(param) {
  if (!param) return null;
  const exact = document.querySelector('.err[data-param="' + CSS.escape(param) + '"]');
  if (exact) return exact;
  // "model_params.multi_prompt[1].duration" belongs to shot 2.
  const shot = /^model_params\.multi_prompt\[(\d+)\]/.exec(param);
  if (shot) return document.querySelector('.shot[data-index="' + shot[1] + '"] .err');
  const ref = /^model_params\.element_image_list\.refer_images\[\d+\]/.exec(param);
  if (ref) return document.querySelector('.err[data-param="model_params.element_image_list.refer_images"]');
  const el = /^model_params\.element_list\[\d+\]/.exec(param);
  if (el) return document.querySelector('.err[data-param="model_params.element_list"]');
  return null;
}

function showError(param, message) {
  const el = errorSlot(param);
  if (el) { el.textContent = message; el.scrollIntoView({ block: "center", behavior: "smooth" }); }
  else { $("formErr").textContent = message; }
  announce("Error: " + message);
}

// ---- models and price ---------------------------------------------------------

function currentModel() { return state.models.find((m) => m.id === $("model").value); }
const isElement = () => $("model").value === "kling-custom-element";
const isT2v = () => $("model").value === "kling-v3-text-to-video";

function updatePrice() {
  const m = currentModel(); if (!m) return;
  let units;
  if (m.billing_rule === "per_call") { units = Math.round((m.price_per_call || 1) * 10000); }
  else {
    const p = (m.pricing || []).find((x) => x.quality === state.quality && x.sound === state.sound);
    if (!p) return;
    units = p.units_per_second * Math.max(3, Number($("duration").value));
  }
  const credits = units / 10000;
  $("price").textContent = credits.toLocaleString(undefined, { maximumFractionDigits: 4 }) + " credits";
  $("priceUsd").textContent = "$" + (credits / 72).toFixed(3);
  $("price").dataset.units = units;
  $("submit").setAttribute("aria-label", "Generate for " + $("price").textContent);
}

function updateCounters() {
  for (const [id, out, max] of [["prompt", "promptCount", 2500], ["negative", "negCount", 2500], ["elName", "elNameCount", 20], ["elDesc", "elDescCount", 100]]) {
    const n = [...$(id).value].length; $(out).textContent = n + " / " + max; $(out).classList.toggle("over", n > max);
  }
}

function updateModelUi() {
  const element = isElement(), t2v = isT2v();
  $("imageFields").classList.toggle("hidden", t2v || element);
  $("elementFields").classList.toggle("hidden", !element);
  $("videoFields").classList.toggle("hidden", element);
  $("aspectBox").classList.toggle("hidden", !t2v);
  $("elementPick").classList.toggle("hidden", t2v || element || !state.elements.length);
  $("submit").textContent = element ? "Create element" : "Generate";
  updatePrice();
}

function segment(id, key) {
  $(id).addEventListener("click", (ev) => {
    const b = ev.target.closest("button"); if (!b) return; ev.preventDefault();
    $(id).querySelectorAll("button").forEach((x) => { x.classList.toggle("on", x === b); x.setAttribute("aria-pressed", String(x === b)); });
    state[key] = b.dataset.v; updatePrice(); updateShots();
  });
}

// ---- multi-shot ---------------------------------------------------------------

function shotRow(prompt = "", dur = 2) {
  const row = h("div", { class: "shot" },
    h("input", { type: "text", maxlength: 512, placeholder: "Shot prompt", "aria-label": "Shot prompt" }),
    h("input", { type: "number", min: 1, max: 15, "aria-label": "Shot seconds" }),
    h("button", { type: "button", "aria-label": "Remove shot" }, "×"),
    h("div", { class: "err" }));
  row.children[0].value = prompt; row.children[1].value = dur;
  row.children[1].addEventListener("input", updateShots);
  row.children[2].addEventListener("click", () => { row.remove(); updateShots(); });
  $("shots").appendChild(row); updateShots();
}

function updateShots() {
  const custom = state.shotType === "customize";
  $("shots").classList.toggle("hidden", !custom); $("addShot").classList.toggle("hidden", !custom);
  const rows = [...$("shots").children];
  rows.forEach((r, i) => {
    r.dataset.index = i;
    r.children[0].setAttribute("aria-label", "Shot " + (i + 1) + " prompt");
    r.children[1].setAttribute("aria-label", "Shot " + (i + 1) + " seconds");
    r.children[2].setAttribute("aria-label", "Remove shot " + (i + 1));
  });
  $("addShot").disabled = rows.length >= 6;
  const sum = rows.reduce((s, r) => s + (Number(r.children[1].value) || 0), 0);
  const want = Number($("duration").value);
  $("shotSum").textContent = custom ? rows.length + " shot(s) · " + sum + " s of " + want + " s" : "Shots are planned from the prompt.";
  $("shotSum").classList.toggle("bad", custom && sum !== want);
}

// ---- uploads ------------------------------------------------------------------

async function upload(file, param) {
  if (!["image/png", "image/jpeg"].includes(file.type)) throw Object.assign(new Error("Only JPG, JPEG or PNG images are accepted."), { param });
  if (file.size > MAX) throw Object.assign(new Error("The image is larger than 10 MB."), { param });
  const form = new FormData(); form.append("file", file);
  try { return (await api("/v1/files", { method: "POST", body: form })).url; }
  catch (e) { e.param = param; throw e; }
}

function preview(file, alt) { return h("img", { src: URL.createObjectURL(file), alt }); }

function resetDrop(drop, hint) { drop.replaceChildren(h("div", { class: "hint" }, hint)); }

// A drop zone for one image: click, keyboard or drag and drop; removable.
function setupDrop(slot, dropId, inputId, clearId, param, label) {
  const drop = $(dropId), input = $(inputId), clear = clearId && $(clearId);
  const hint = drop.textContent.trim();
  const pick = () => input.click();
  drop.addEventListener("click", pick);
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); pick(); } });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("hover"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("hover"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("hover"); take(e.dataTransfer.files); });
  input.addEventListener("change", () => { take(input.files); input.value = ""; });
  if (clear) clear.addEventListener("click", () => { state.images[slot] = null; resetDrop(drop, hint); clear.classList.add("hidden"); announce(label + " removed."); });
  async function take(files) {
    const err = document.querySelector('.err[data-param="' + param + '"]'); err.textContent = "";
    if (!files || files.length !== 1) { showError(param, "Choose one file."); return; }
    const f = files[0];
    drop.replaceChildren(h("div", { class: "muted" }, "Uploading…"));
    try {
      state.images[slot] = await upload(f, param);
      drop.replaceChildren(preview(f, label), h("small", {}, f.name + " · click to replace"));
      if (clear) clear.classList.remove("hidden");
      announce(label + " uploaded.");
    } catch (e) {
      state.images[slot] = null; resetDrop(drop, hint); if (clear) clear.classList.add("hidden");
      showError(param, e.message);
    }
  }
}

// The reference images of an element: one to three, each removable.
function setupRefs() {
  const drop = $("dropRefs"), input = $("fileRefs"), param = "model_params.element_image_list.refer_images";
  const pick = () => input.click();
  drop.addEventListener("click", pick);
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); pick(); } });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("hover"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("hover"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("hover"); take(e.dataTransfer.files); });
  input.addEventListener("change", () => { take(input.files); input.value = ""; });
  async function take(files) {
    document.querySelector('.err[data-param="' + param + '"]').textContent = "";
    for (const f of [...(files || [])]) {
      if (state.refs.length >= 3) { showError(param, "At most 3 reference images."); return; }
      try {
        const url = await upload(f, param);
        state.refs.push({ url, file: f });
        renderRefs(); announce("Reference image added.");
      } catch (e) { showError(param, e.message); return; }
    }
  }
}

function renderRefs() {
  $("refs").replaceChildren(...state.refs.map((r, i) => h("figure", {}, preview(r.file, "Reference image " + (i + 1)),
    h("button", { type: "button", "aria-label": "Remove reference image " + (i + 1), onclick: () => { state.refs.splice(i, 1); renderRefs(); announce("Reference image removed."); } }, "×"))));
}

// ---- the request ---------------------------------------------------------------

function body() {
  const model = $("model").value;
  if (isElement()) {
    const list = { refer_images: state.refs.map((r) => ({ image_url: r.url })) };
    if (state.images.frontal) list.frontal_image = state.images.frontal;
    return { model, model_params: { element_name: $("elName").value.trim(), element_description: $("elDesc").value.trim(), reference_type: "image_refer", element_image_list: list } };
  }
  const b = { model, duration: Number($("duration").value), quality: state.quality, sound: state.sound };
  const prompt = $("prompt").value.trim(); if (prompt) b.prompt = prompt;
  const neg = $("negative").value.trim(); if (neg) b.negative_prompt = neg;
  if (isT2v()) b.aspect_ratio = $("aspect").value;
  else { if (state.images.start) b.image_start = state.images.start; if (state.images.end) b.image_end = state.images.end; }
  const cb = $("callback").value.trim(); if (cb) b.callback_url = cb;
  const mp = {};
  if ($("multi").checked) {
    mp.multi_shot = true; mp.shot_type = state.shotType;
    if (state.shotType === "customize") mp.multi_prompt = [...$("shots").children].map((r, i) => ({ index: i + 1, prompt: r.children[0].value, duration: String(r.children[1].value) }));
  }
  if ($("watermark").checked) mp.watermark_info = { enabled: true };
  const picked = [...document.querySelectorAll("#elements input:checked")].map((c) => ({ element_id: c.value }));
  if (!isT2v() && picked.length) mp.element_list = picked;
  if (Object.keys(mp).length) b.model_params = mp;
  return b;
}

// Checks what the browser can check before asking the server.
function precheck(b) {
  if (b.model === "kling-v3-image-to-video" && !b.image_start) return ["image_start", "Add a start frame."];
  if (isElement()) {
    const p = b.model_params;
    if (!p.element_name) return ["model_params.element_name", "Give the element a name."];
    if (!p.element_description) return ["model_params.element_description", "Describe the element."];
    if (!p.element_image_list.frontal_image) return ["model_params.element_image_list.frontal_image", "Add a frontal image."];
    if (!p.element_image_list.refer_images.length) return ["model_params.element_image_list.refer_images", "Add at least one reference image."];
  }
  const shots = b.model_params && b.model_params.multi_prompt;
  if (shots) {
    const i = shots.findIndex((s) => !s.prompt.trim());
    if (i >= 0) return ["model_params.multi_prompt[" + i + "].prompt", "Shot " + (i + 1) + " needs a prompt."];
  }
  if (document.querySelectorAll("#elements input:checked").length > 3) return ["model_params.element_list", "At most 3 elements."];
  return null;
}

async function submit() {
  clearErrors();
  const b = body();
  const bad = precheck(b);
  if (bad) { showError(bad[0], bad[1]); return; }
  $("submit").disabled = true;
  try {
    const t = await api("/v1/videos/generations", { method: "POST", headers: { "Content-Type": "application/json", "Idempotency-Key": crypto.randomUUID ? crypto.randomUUID() : String(Date.now()) }, body: JSON.stringify(b) });
    rememberPrompt(t.id, b.prompt || (b.model_params && b.model_params.element_name ? "Element: " + b.model_params.element_name : ""));
    announce("Task created: " + t.model + ", " + t.status + ".");
    state.pollDelay = 1000; refresh(); loadCredits();
  } catch (e) { showError(e.param, e.message); }
  finally { $("submit").disabled = false; }
}

// ---- history --------------------------------------------------------------------

async function cancelTask(id, button) {
  button.disabled = true;
  try { await api("/v1/tasks/" + encodeURIComponent(id) + "/cancel", { method: "POST" }); announce("Task cancelled."); }
  catch (e) { announce("Cancel failed: " + e.message); }
  state.pollDelay = 1000; refresh(); loadCredits();
}

function renderTask(t) {
  const el = h("div", { class: "task", "data-id": t.id, "data-status": t.status });
  const charged = t.usage.credits_charged ?? t.usage.credits_reserved;
  el.append(h("div", { class: "top" }, h("span", { class: "badge " + t.status }, t.status),
    h("span", { class: "muted" }, t.model + " · " + (t.task_info.video_duration ? t.task_info.video_duration + " s · " : "") + charged / 10000 + " credits")));
  el.append(h("div", { class: "when" }, new Date(t.created * 1000).toLocaleString()), h("div", { class: "id" }, t.id));
  const prompt = promptOf(t.id);
  if (prompt) el.append(h("div", { class: "prompt" }, prompt));
  if (t.status === "pending" || t.status === "processing") {
    const bar = h("div", { class: "bar", role: "progressbar", "aria-valuenow": t.progress, "aria-valuemin": 0, "aria-valuemax": 100, "aria-label": "Progress" }, h("i"));
    bar.firstChild.style.width = t.progress + "%";
    el.append(bar);
    if (t.task_info.can_cancel) {
      const cancel = h("button", { type: "button", class: "link cancel" }, "Cancel");
      cancel.addEventListener("click", () => cancelTask(t.id, cancel));
      el.append(h("div", { class: "actions" }, cancel));
    }
  }
  if (t.status === "completed" && t.results && t.results[0]) {
    const v = h("video", { controls: true, preload: "metadata", playsinline: true });
    v.src = t.results[0];
    el.append(v, h("a", { href: t.results[0], download: t.id + ".mp4", class: "muted" }, "Download MP4"));
  }
  if (t.status === "completed" && t.result_data) el.append(h("div", { class: "muted result-data" }, JSON.stringify(t.result_data)));
  if (t.status === "failed" && t.error) el.append(h("div", { class: "task-err" }, t.error.message + " (" + t.error.code + ")"));
  return el;
}

function updateElements(tasks) {
  const found = tasks.filter((t) => t.model === "kling-custom-element" && t.status === "completed" && t.result_data && t.result_data.element_id);
  const ids = found.map((t) => t.result_data.element_id);
  if (ids.join() === state.elements.join()) return;
  const checked = new Set([...document.querySelectorAll("#elements input:checked")].map((c) => c.value));
  state.elements = ids;
  $("elements").replaceChildren(...found.map((t) => {
    const box = h("input", { type: "checkbox", value: t.result_data.element_id });
    box.checked = checked.has(t.result_data.element_id);
    return h("label", {}, box, (promptOf(t.id) || "Element") + " · " + t.result_data.element_id);
  }));
  updateModelUi();
}

async function refresh() {
  clearTimeout(state.timer);
  try {
    const list = await api("/v1/tasks?limit=20");
    const tasks = list.data || [];
    const running = tasks.filter((t) => t.status === "pending" || t.status === "processing").length;
    const done = tasks.filter((t) => t.status === "completed").length;
    $("histCount").textContent = "max 20 · " + running + " running · " + done + " completed";
    for (const t of tasks) {
      const before = state.statuses.get(t.id);
      if (before && before !== t.status) announce("Task " + t.id + " is " + t.status + (t.error ? ": " + t.error.message : "") + ".");
      state.statuses.set(t.id, t.status);
    }
    const hist = $("history");
    if (!tasks.length) { hist.replaceChildren(h("p", { class: "muted" }, "No tasks yet.")); }
    else {
      // Keep the nodes of finished tasks (their players and errors) and redraw the rest.
      const old = new Map([...hist.querySelectorAll(".task")].map((n) => [n.dataset.id, n]));
      const frag = document.createDocumentFragment();
      for (const t of tasks) {
        const prev = old.get(t.id);
        frag.append(prev && prev.dataset.status === t.status && (t.status === "completed" || t.status === "failed") ? prev : renderTask(t));
      }
      hist.replaceChildren(frag);
    }
    updateElements(tasks);
    state.pollDelay = running ? 1000 : Math.min(state.pollDelay * 2, 15000);
    if (running) loadCredits();
  } catch (e) {
    if (e.status === 401) { askKey("That API key was refused."); return; }
    state.pollDelay = Math.min(state.pollDelay * 2, 15000);
  }
  state.timer = setTimeout(refresh, state.pollDelay);
}

async function loadCredits() {
  try {
    const c = await api("/v1/credits");
    $("credits").replaceChildren("Remaining ", h("b", {}, c.data.token.remaining_credits.toLocaleString(undefined, { maximumFractionDigits: 4 })), " credits");
  } catch (_) { /* the balance line is a convenience */ }
}

function askKey(msg) {
  clearTimeout(state.timer);
  $("app").classList.add("hidden"); $("keyBox").classList.remove("hidden"); $("keyErr").textContent = msg || ""; $("keyInput").focus();
}

async function start() {
  try {
    const models = await api("/v1/models");
    state.models = models.data;
    $("model").replaceChildren(...state.models.map((m) => h("option", { value: m.id }, m.name)));
  } catch (e) { askKey(e.status === 401 ? "That API key was refused." : e.message); return; }
  $("keyBox").classList.add("hidden"); $("app").classList.remove("hidden");
  updateModelUi(); updateCounters(); loadCredits(); refresh();
}

$("keySave").addEventListener("click", () => { const k = $("keyInput").value.trim(); if (!k) return; state.key = k; localStorage.setItem("vidgate.key", k); start(); });
$("keyInput").addEventListener("keydown", (e) => { if (e.key === "Enter") $("keySave").click(); });
$("forget").addEventListener("click", () => { localStorage.removeItem("vidgate.key"); state.key = ""; askKey(); });
$("model").addEventListener("change", () => { clearErrors(); updateModelUi(); });
$("duration").addEventListener("input", () => { $("durationOut").textContent = $("duration").value; updatePrice(); updateShots(); });
for (const id of ["prompt", "negative", "elName", "elDesc"]) $(id).addEventListener("input", updateCounters);
$("multi").addEventListener("change", () => { $("multiBox").classList.toggle("hidden", !$("multi").checked); if ($("multi").checked && !$("shots").children.length) { shotRow("", 2); shotRow("", Number($("duration").value) - 2); } });
$("addShot").addEventListener("click", () => { if ($("shots").children.length < 6) shotRow("", 1); });
$("submit").addEventListener("click", submit);
segment("quality", "quality"); segment("sound", "sound"); segment("shotType", "shotType");
setupDrop("start", "dropStart", "fileStart", "clearStart", "image_start", "Start frame");
setupDrop("end", "dropEnd", "fileEnd", "clearEnd", "image_end", "End frame");
setupDrop("frontal", "dropFrontal", "fileFrontal", null, "model_params.element_image_list.frontal_image", "Frontal image");
setupRefs();
if (state.key) start(); else askKey();
