// The vidgate playground: try any model in the browser with an API key kept in
// this browser's local storage. The form follows `GET /v1/models`: each model's
// JSON Schema (`parameters`) says which fields it has (frames, reference images,
// an input video, duration as a range or a choice, qualities, sound, aspect,
// multi-shot, elements...) and its pricing row gives the price shown next to
// Generate. Everything a server or a user supplied is put on the page as text
// (textContent), never as HTML. Form errors live next to their field (a shot's
// next to the shot); a task's error stays in the history; status changes are
// announced to screen readers.
"use strict";

const $ = (id) => document.getElementById(id);
const PROMPTS = "vidgate.prompts";
const IMAGE_TYPES = ["image/png", "image/jpeg"];
const VIDEO_TYPES = ["video/mp4", "video/quicktime"];
const state = {
  key: localStorage.getItem("vidgate.key") || "",
  models: [],
  images: { start: null, end: null, frontal: null },
  refs: [], list: [], video: null, elVideo: null, videoSeconds: null,
  quality: null, sound: null, picked: { quality: null, sound: null }, shotType: "customize", refType: "image_refer",
  pollDelay: 1000, timer: null, statuses: new Map(), elements: [],
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

// ---- the current model and its schema -----------------------------------------

function model() { return state.models.find((m) => m.id === $("model").value); }
function props(m) { return (m && m.parameters && m.parameters.properties) || {}; }
function params(m) { const p = props(m).model_params; return (p && p.properties) || {}; }
function required(m) { return (m && m.parameters && m.parameters.required) || []; }
function values(s) { return s ? (s.enum || (s.const !== undefined ? [s.const] : [])) : []; }
const isElement = () => { const m = model(); return !!m && m.shape === "custom_element"; };
const videoField = (m) => ["video_url", "video_urls"].find((f) => props(m)[f]);
// `image_urls` is its own field only where it is not an alias of the frames.
function imageList(m) {
  const s = props(m).image_urls;
  if (!s || /^Alias/.test(s.description || "")) return null;
  const frames = /frame/i.test((s.items && s.items.description) || "");
  return { frames, min: s.minItems || 0, max: s.maxItems || 1 };
}
const keepSoundField = (m) => (props(m).keep_original_sound ? "keep_original_sound" : params(m).keep_sound ? "model_params.keep_sound" : null);

// ---- errors next to their fields ----------------------------------------------

// Only the form's own errors: a task's error in the history is not the form's.
function clearErrors() {
  document.querySelectorAll("main .err[data-param], #formErr").forEach((e) => (e.textContent = ""));
}

function errorSlot(param) {
  if (!param) return null;
  const exact = document.querySelector('.err[data-param="' + CSS.escape(param) + '"]');
  if (exact && !exact.closest(".hidden")) return exact;
  const rules = [
    [/^model_params\.multi_prompt\[(\d+)\]/, (m) => '.shot[data-index="' + m[1] + '"] .err'],
    [/^model_params\.element_image_list\.refer_images/, () => '.err[data-param="model_params.element_image_list.refer_images"]'],
    [/^model_params\.element_video_list/, () => '.err[data-param="model_params.element_video_list"]'],
    [/^model_params\.element_list/, () => '.err[data-param="model_params.element_list"]'],
    [/^video_urls?(\[\d+\])?$/, () => "#videoErr"],
    [/^image_urls(\[\d+\])?$/, () => '.err[data-param="image_urls"]'],
    [/^(generate_audio)$/, () => '.err[data-param="sound"]'],
    [/^model_params\.keep_sound|^keep_original_sound/, () => "#videoErr"],
  ];
  for (const [re, sel] of rules) {
    const m = re.exec(param);
    if (m) { const el = document.querySelector(sel(m)); if (el && !el.closest(".hidden")) return el; }
  }
  return null;
}

function showError(param, message) {
  const el = errorSlot(param);
  if (el) { el.textContent = message; el.scrollIntoView({ block: "center", behavior: "smooth" }); }
  else { $("formErr").textContent = message; }
  announce("Error: " + message);
}

// ---- the form for the model ----------------------------------------------------

function toggle(id, on) { $(id).classList.toggle("hidden", !on); }

// A segmented control from a list of values: each button says whether it is pressed.
function segmented(id, choices, current, onPick) {
  const box = $(id);
  box.replaceChildren(...choices.map(([v, label]) => h("button", { type: "button", "data-v": v, class: v === current ? "on" : null, "aria-pressed": String(v === current) }, label)));
  box.onclick = (ev) => {
    const b = ev.target.closest("button"); if (!b) return; ev.preventDefault();
    box.querySelectorAll("button").forEach((x) => { x.classList.toggle("on", x === b); x.setAttribute("aria-pressed", String(x === b)); });
    onPick(b.dataset.v);
  };
}

function fillSelect(id, vals, def) {
  const sel = $(id), keep = sel.value;
  sel.replaceChildren(...vals.map((v) => h("option", { value: v }, String(v))));
  sel.value = vals.includes(keep) ? keep : def !== undefined && vals.includes(def) ? def : vals[0];
}

function updateModelUi() {
  const m = model(); if (!m) return;
  const p = props(m), mp = params(m), element = isElement();
  $("modelNote").textContent = (m.parameters && m.parameters.description) || "";
  // Media.
  toggle("imageFields", !!p.image_start);
  toggle("endBox", !!p.image_end);
  $("startLabel").textContent = required(m).includes("image_start") || m.shape === "image_to_video" && !imageList(m) ? "Start frame" : "Start frame (optional)";
  const list = imageList(m);
  toggle("imagesBox", !!list);
  if (list) $("imagesLabel").textContent = (list.frames ? "Frames: the first, then the last" : "Reference images") + " (" + (list.min ? list.min + " to " : "up to ") + list.max + ")";
  const vf = videoField(m);
  toggle("videoBox", !!vf);
  if (vf) { $("videoErr").dataset.param = vf; $("videoLabel").textContent = "Input video"; $("videoHint").textContent = "Click to upload or drag and drop · " + ((p[vf].description || p[vf].items && p[vf].items.description || "MP4 or MOV").replace(/^The input video: [^.]*\. /, "")); }
  // A custom element.
  toggle("elementFields", element);
  if (element) {
    const types = values(mp.reference_type);
    segmented("refType", types.map((t) => [t, t === "video_refer" ? "A video" : "Images"]), state.refType, (v) => { state.refType = v; updateModelUi(); });
    toggle("elImages", state.refType === "image_refer");
    toggle("elVideo", state.refType === "video_refer");
  }
  // Text.
  toggle("promptBox", !!p.prompt);
  if (p.prompt) $("prompt").dataset.max = p.prompt.maxLength || 2500;
  toggle("negativeBox", !!p.negative_prompt);
  if (p.negative_prompt) $("negative").dataset.max = p.negative_prompt.maxLength || 2500;
  // Duration: a range or a few values.
  const d = p.duration;
  toggle("durationBox", !!d && !d.enum);
  toggle("durationPickBox", !!d && !!d.enum);
  if (d && !d.enum) {
    const r = $("duration");
    r.min = d.minimum; r.max = d.maximum;
    if (Number(r.value) < d.minimum || Number(r.value) > d.maximum) r.value = d.default ?? d.minimum;
    $("durationOut").textContent = r.value;
  }
  if (d && d.enum) fillSelect("durationPick", d.enum, d.default);
  // Quality, sound, aspect: choices when there are several, a note when fixed.
  const fixed = [];
  const qv = values(p.quality), sv = values(p.sound);
  // What the person picked carries over to a model that offers it; otherwise the model's default.
  state.quality = qv.includes(state.picked.quality) ? state.picked.quality : p.quality ? (p.quality.default ?? qv[0]) : null;
  state.sound = sv.includes(state.picked.sound) ? state.picked.sound : p.sound ? (p.sound.default ?? sv[0]) : null;
  toggle("qualityBox", qv.length > 1);
  if (qv.length > 1) segmented("quality", qv.map((v) => [v, v]), state.quality, (v) => { state.quality = state.picked.quality = v; updatePrice(); });
  else if (qv.length === 1) fixed.push(qv[0]);
  toggle("soundBox", sv.length > 1);
  if (sv.length > 1) segmented("sound", sv.map((v) => [v, v === "on" ? "On" : "Off"]), state.sound, (v) => { state.sound = state.picked.sound = v; updatePrice(); });
  else if (sv.length === 1) fixed.push("sound " + sv[0]);
  $("fixedNote").textContent = fixed.length ? "This model makes " + fixed.join(", ") + "." : "";
  toggle("aspectBox", !!p.aspect_ratio);
  if (p.aspect_ratio) fillSelect("aspect", values(p.aspect_ratio), p.aspect_ratio.default);
  toggle("orientationBox", !!mp.character_orientation);
  if (mp.character_orientation) fillSelect("orientation", values(mp.character_orientation));
  const ks = keepSoundField(m);
  toggle("keepSoundBox", !!ks);
  if (ks) { const s = ks === "keep_original_sound" ? p.keep_original_sound : mp.keep_sound; $("keepSound").checked = s.default !== false; }
  // Multi-shot, elements, watermark.
  toggle("multiWrap", !!mp.multi_shot);
  if (!mp.multi_shot) { $("multi").checked = false; toggle("multiBox", false); }
  else {
    const types = values(mp.shot_type);
    if (!types.includes(state.shotType)) state.shotType = types[0];
    segmented("shotType", types.map((t) => [t, t === "customize" ? "Customize" : "Intelligence"]), state.shotType, (v) => { state.shotType = v; updateShots(); });
    updateShots();
  }
  const el = mp.element_list;
  toggle("elementPick", !!el && state.elements.length > 0);
  if (el) $("elementsLabel").textContent = "Elements (up to " + el.maxItems + "; refer to them in the prompt as <<<element_1>>>)";
  toggle("watermarkBox", !!mp.watermark_info);
  $("submit").textContent = element ? "Create element" : "Generate";
  updateCounters();
  updatePrice();
}

function duration() {
  const d = props(model()).duration;
  if (!d) return null;
  return Number(d.enum ? $("durationPick").value : $("duration").value);
}

// The seconds held for this request, or null when they depend on a video not chosen yet.
function billedSeconds(m) {
  const clamp = (s) => Math.min(m.max_billed_seconds, Math.max(m.min_billed_seconds, s));
  const video = state.videoSeconds === null ? null : Math.ceil(state.videoSeconds - 1e-6);
  if (m.billed_by === "input_video") return video === null ? null : clamp(video);
  if (m.billed_by === "output_video" && !props(m).duration) {
    if (video === null) return null;
    const cap = $("orientation").value === "image" ? 10 : m.max_billed_seconds;
    return clamp(Math.min(video, cap));
  }
  return clamp(duration() ?? m.min_billed_seconds);
}

function updatePrice() {
  const m = model(); if (!m) return;
  const show = (text, usd) => { $("price").textContent = text; $("priceUsd").textContent = usd; $("submit").setAttribute("aria-label", (isElement() ? "Create element" : "Generate") + " for " + text); };
  if (m.billing_rule === "per_call") {
    const credits = m.units_per_call / 10000;
    $("price").dataset.units = m.units_per_call;
    show(credits.toLocaleString(undefined, { maximumFractionDigits: 4 }) + " credits", "$" + (credits / 72).toFixed(3));
    return;
  }
  const row = (m.pricing || []).find((x) => (state.quality === null || x.quality === state.quality) && (state.sound === null || x.sound === state.sound)) || (m.pricing || [])[0];
  if (!row) return;
  const seconds = billedSeconds(m);
  const perSecond = row.units_per_second / 10000;
  if (seconds === null) {
    delete $("price").dataset.units;
    show(perSecond.toLocaleString(undefined, { maximumFractionDigits: 4 }) + " credits/s", "× the input video's seconds (" + m.min_billed_seconds + " to " + m.max_billed_seconds + " billed)");
    return;
  }
  const units = row.units_per_second * seconds;
  const credits = units / 10000;
  $("price").dataset.units = units;
  show(credits.toLocaleString(undefined, { maximumFractionDigits: 4 }) + " credits", "$" + (credits / 72).toFixed(3) + (row.estimated ? " · estimated" : ""));
}

function updateCounters() {
  for (const [id, out, max] of [["prompt", "promptCount", Number($("prompt").dataset.max || 2500)], ["negative", "negCount", Number($("negative").dataset.max || 2500)], ["elName", "elNameCount", 20], ["elDesc", "elDescCount", 100]]) {
    const n = [...$(id).value].length; $(out).textContent = n + " / " + max; $(out).classList.toggle("over", n > max);
  }
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
  const want = duration() || 0;
  $("shotSum").textContent = custom ? rows.length + " shot(s) · " + sum + " s of " + want + " s" : "Shots are planned from the prompt.";
  $("shotSum").classList.toggle("bad", custom && sum !== want);
}

// ---- uploads ------------------------------------------------------------------

async function upload(file, param, kinds) {
  const video = kinds === VIDEO_TYPES;
  const type = file.type || (/\.mov$/i.test(file.name) ? "video/quicktime" : /\.mp4$/i.test(file.name) ? "video/mp4" : "");
  if (!kinds.includes(type)) throw Object.assign(new Error(video ? "Only MP4 or MOV videos are accepted." : "Only JPG, JPEG or PNG images are accepted."), { param });
  const form = new FormData(); form.append("file", file);
  try { return (await api("/v1/files", { method: "POST", body: form })).url; }
  catch (e) { e.param = param; throw e; }
}

function preview(file, alt) {
  if (VIDEO_TYPES.includes(file.type) || /\.(mp4|mov)$/i.test(file.name)) return h("video", { src: URL.createObjectURL(file), muted: true, "aria-label": alt, class: "thumbvideo" });
  return h("img", { src: URL.createObjectURL(file), alt });
}

function resetDrop(drop, hint) { drop.replaceChildren(h("div", { class: "hint" }, hint)); }

// Reads a video's length in the browser (for the price of models billed on it).
function videoSeconds(file) {
  return new Promise((resolve) => {
    const v = document.createElement("video");
    v.preload = "metadata"; v.muted = true;
    v.onloadedmetadata = () => resolve(Number.isFinite(v.duration) ? v.duration : null);
    v.onerror = () => resolve(null);
    v.src = URL.createObjectURL(file);
  });
}

function dropTarget(drop, input, take) {
  const pick = () => input.click();
  drop.addEventListener("click", pick);
  drop.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); pick(); } });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("hover"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("hover"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("hover"); take(e.dataTransfer.files); });
  input.addEventListener("change", () => { take(input.files); input.value = ""; });
}

// A drop zone for one file: click, keyboard or drag and drop; removable.
function setupDrop(slot, dropId, inputId, clearId, paramOf, label, kinds, after) {
  const drop = $(dropId), input = $(inputId), clear = clearId && $(clearId);
  const hint = () => drop.dataset.hint || (drop.dataset.hint = drop.textContent.trim());
  hint();
  const param = () => (typeof paramOf === "function" ? paramOf() : paramOf);
  if (clear) clear.addEventListener("click", () => { state[slot] = null; if (state.images[slot] !== undefined) state.images[slot] = null; resetDrop(drop, hint()); clear.classList.add("hidden"); if (after) after(null); announce(label + " removed."); });
  dropTarget(drop, input, async (files) => {
    const err = errorSlot(param()); if (err) err.textContent = "";
    if (!files || files.length !== 1) { showError(param(), "Choose one file."); return; }
    const f = files[0];
    drop.replaceChildren(h("div", { class: "muted" }, "Uploading…"));
    try {
      const url = await upload(f, param(), kinds);
      if (slot in state.images) state.images[slot] = url; else state[slot] = url;
      drop.replaceChildren(preview(f, label), h("small", {}, f.name + " · click to replace"));
      if (clear) clear.classList.remove("hidden");
      if (after) await after(f);
      announce(label + " uploaded.");
    } catch (e) {
      if (slot in state.images) state.images[slot] = null; else state[slot] = null;
      resetDrop(drop, hint()); if (clear) clear.classList.add("hidden");
      if (after) after(null);
      showError(param(), e.message);
    }
  });
}

// A drop zone for several images, each removable; `max()` says how many.
function setupMany(listKey, dropId, inputId, thumbsId, param, label, max) {
  dropTarget($(dropId), $(inputId), async (files) => {
    const err = document.querySelector('.err[data-param="' + param + '"]'); if (err) err.textContent = "";
    for (const f of [...(files || [])]) {
      if (state[listKey].length >= max()) { showError(param, "At most " + max() + " images."); return; }
      try { state[listKey].push({ url: await upload(f, param, IMAGE_TYPES), file: f }); renderMany(listKey, thumbsId, label); announce(label + " added."); }
      catch (e) { showError(param, e.message); return; }
    }
  });
}

function renderMany(listKey, thumbsId, label) {
  $(thumbsId).replaceChildren(...state[listKey].map((r, i) => h("figure", {}, preview(r.file, label + " " + (i + 1)),
    h("button", { type: "button", "aria-label": "Remove " + label.toLowerCase() + " " + (i + 1), onclick: () => { state[listKey].splice(i, 1); renderMany(listKey, thumbsId, label); announce(label + " removed."); } }, "×"))));
}

// ---- the request ---------------------------------------------------------------

function body() {
  const m = model(), p = props(m), mp = params(m);
  const b = { model: m.id };
  const mparams = {};
  if (isElement()) {
    Object.assign(mparams, { element_name: $("elName").value.trim(), element_description: $("elDesc").value.trim(), reference_type: state.refType });
    if (state.refType === "video_refer") {
      mparams.element_video_list = { refer_videos: state.elVideo ? [{ video_url: state.elVideo }] : [] };
      if ($("elVoice").value.trim()) mparams.element_voice_id = $("elVoice").value.trim();
    } else {
      const list = { refer_images: state.refs.map((r) => ({ image_url: r.url })) };
      if (state.images.frontal) list.frontal_image = state.images.frontal;
      mparams.element_image_list = list;
    }
  } else {
    const prompt = $("prompt").value.trim(); if (p.prompt && prompt) b.prompt = prompt;
    const neg = $("negative").value.trim(); if (p.negative_prompt && neg) b.negative_prompt = neg;
    if (p.duration) b.duration = duration();
    if (values(p.quality).length > 1) b.quality = state.quality;
    if (values(p.sound).length > 1) b.sound = state.sound;
    if (p.aspect_ratio) b.aspect_ratio = $("aspect").value;
    if (p.image_start && state.images.start) b.image_start = state.images.start;
    if (p.image_end && state.images.end) b.image_end = state.images.end;
    if (imageList(m) && state.list.length) b.image_urls = state.list.map((r) => r.url);
    const vf = videoField(m);
    if (vf && state.video) b[vf] = vf === "video_urls" ? [state.video] : state.video;
    const ks = keepSoundField(m);
    if (ks === "keep_original_sound") b.keep_original_sound = $("keepSound").checked;
    if (ks === "model_params.keep_sound") mparams.keep_sound = $("keepSound").checked;
    if (mp.character_orientation) mparams.character_orientation = $("orientation").value;
    if (mp.multi_shot && $("multi").checked) {
      mparams.multi_shot = true; mparams.shot_type = state.shotType;
      if (state.shotType === "customize") mparams.multi_prompt = [...$("shots").children].map((r, i) => ({ index: i + 1, prompt: r.children[0].value, duration: String(r.children[1].value) }));
    }
    if (mp.watermark_info && $("watermark").checked) mparams.watermark_info = { enabled: true };
    const picked = [...document.querySelectorAll("#elements input:checked")].map((c) => ({ element_id: c.value }));
    if (mp.element_list && picked.length) mparams.element_list = picked;
  }
  const cb = $("callback").value.trim(); if (cb) b.callback_url = cb;
  if (Object.keys(mparams).length) b.model_params = mparams;
  return b;
}

// What the browser can check before asking the server (the server checks all).
function precheck(b) {
  const m = model(), p = props(m), req = required(m);
  if (isElement()) {
    const mp = b.model_params;
    if (!mp.element_name) return ["model_params.element_name", "Give the element a name."];
    if (!mp.element_description) return ["model_params.element_description", "Describe the element."];
    if (mp.element_image_list && !mp.element_image_list.frontal_image) return ["model_params.element_image_list.frontal_image", "Add a frontal image."];
    if (mp.element_image_list && !mp.element_image_list.refer_images.length) return ["model_params.element_image_list.refer_images", "Add at least one reference image."];
    if (mp.element_video_list && !mp.element_video_list.refer_videos.length) return ["model_params.element_video_list", "Add a video of the subject."];
    return null;
  }
  if (p.image_start && !b.image_start && (req.includes("image_start") || m.shape === "image_to_video" && !imageList(m))) return ["image_start", "Add a start frame."];
  const list = imageList(m);
  if (list && list.min && (b.image_urls || []).length < list.min) return ["image_urls", list.frames ? "Add the first frame." : "Add a reference image."];
  const vf = videoField(m);
  if (vf && !b[vf] && req.includes(vf)) return [vf, "Add the input video."];
  if (req.includes("prompt") && !b.prompt && !(b.model_params && b.model_params.multi_prompt)) return ["prompt", "Write a prompt."];
  const shots = b.model_params && b.model_params.multi_prompt;
  if (shots) {
    const i = shots.findIndex((s) => !s.prompt.trim());
    if (i >= 0) return ["model_params.multi_prompt[" + i + "].prompt", "Shot " + (i + 1) + " needs a prompt."];
  }
  const max = params(m).element_list && params(m).element_list.maxItems;
  if (max && document.querySelectorAll("#elements input:checked").length > max) return ["model_params.element_list", "At most " + max + " elements."];
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
    $("model").value = state.models.some((m) => m.id === "kling-v3-image-to-video") ? "kling-v3-image-to-video" : state.models[0].id;
  } catch (e) { askKey(e.status === 401 ? "That API key was refused." : e.message); return; }
  $("keyBox").classList.add("hidden"); $("app").classList.remove("hidden");
  updateModelUi(); loadCredits(); refresh();
}

$("keySave").addEventListener("click", () => { const k = $("keyInput").value.trim(); if (!k) return; state.key = k; localStorage.setItem("vidgate.key", k); start(); });
$("keyInput").addEventListener("keydown", (e) => { if (e.key === "Enter") $("keySave").click(); });
$("forget").addEventListener("click", () => { localStorage.removeItem("vidgate.key"); state.key = ""; askKey(); });
$("model").addEventListener("change", () => { clearErrors(); updateModelUi(); });
$("duration").addEventListener("input", () => { $("durationOut").textContent = $("duration").value; updatePrice(); updateShots(); });
$("durationPick").addEventListener("change", () => { updatePrice(); updateShots(); });
$("orientation").addEventListener("change", updatePrice);
for (const id of ["prompt", "negative", "elName", "elDesc"]) $(id).addEventListener("input", updateCounters);
$("multi").addEventListener("change", () => { toggle("multiBox", $("multi").checked); if ($("multi").checked && !$("shots").children.length) { shotRow("", 2); shotRow("", (duration() || 5) - 2); } });
$("addShot").addEventListener("click", () => { if ($("shots").children.length < 6) shotRow("", 1); });
$("submit").addEventListener("click", submit);
setupDrop("start", "dropStart", "fileStart", "clearStart", "image_start", "Start frame", IMAGE_TYPES);
setupDrop("end", "dropEnd", "fileEnd", "clearEnd", "image_end", "End frame", IMAGE_TYPES);
setupDrop("frontal", "dropFrontal", "fileFrontal", null, "model_params.element_image_list.frontal_image", "Frontal image", IMAGE_TYPES);
setupDrop("video", "dropVideo", "fileVideo", "clearVideo", () => videoField(model()) || "video_url", "Input video", VIDEO_TYPES,
  async (f) => { state.videoSeconds = f ? await videoSeconds(f) : null; updatePrice(); });
setupDrop("elVideo", "dropElVideo", "fileElVideo", "clearElVideo", "model_params.element_video_list", "Element video", VIDEO_TYPES);
setupMany("refs", "dropRefs", "fileRefs", "refs", "model_params.element_image_list.refer_images", "Reference image", () => 3);
setupMany("list", "dropImages", "fileImages", "images", "image_urls", "Image", () => { const l = imageList(model()); return l ? l.max : 0; });
if (state.key) start(); else askKey();
