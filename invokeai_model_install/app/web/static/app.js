// The model manager page: plain JavaScript over the JSON API (docs/web.md). No build step, nothing from the network.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { models: [], starters: [], pending: [], job: null, items: new Map(), question: null, answeredQids: new Set() };

// The token came in the address (?token=...); the server keeps it in an HttpOnly cookie. Drop it from the address bar.
if (location.search.includes("token=")) {
  history.replaceState(null, "", location.pathname);
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k in node && typeof v !== "string") node[k] = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

function humanBytes(n) {
  if (n === null || n === undefined || n < 0) return "?";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let v = n, i = 0;
  while (v >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return i === 0 ? `${v} B` : `${v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0)} ${units[i]}`;
}

function humanTime(s) {
  if (!isFinite(s) || s < 0) return "";
  s = Math.round(s);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${s % 60}s`;
  return `${Math.floor(m / 60)}h ${m % 60}m`;
}

async function api(method, path, body) {
  const opts = { method, headers: {}, credentials: "same-origin" };
  if (body !== undefined) {
    opts.headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(body);
  }
  const resp = await fetch(path, opts);
  let data = null;
  try { data = await resp.json(); } catch (e) { data = null; }
  if (!resp.ok) {
    const err = new Error((data && data.error) || `${method} ${path}: HTTP ${resp.status}`);
    err.status = resp.status;
    throw err;
  }
  return data;
}

function showBanner(text) {
  $("banner-text").textContent = text;
  $("banner").classList.remove("hidden");
}

// --- tabs ------------------------------------------------------------------------------------

function showTab(name) {
  for (const b of document.querySelectorAll(".tab")) b.classList.toggle("active", b.dataset.tab === name);
  for (const v of document.querySelectorAll(".view")) v.classList.toggle("hidden", v.id !== `view-${name}`);
  document.body.dataset.tab = name;
}

// --- installed models --------------------------------------------------------------------------

async function loadModels() {
  try {
    const data = await api("GET", "/api/models");
    state.models = data.models;
    renderModels();
  } catch (e) {
    showBanner(e.message);
  }
}

function renderModels() {
  const body = $("models-body");
  body.replaceChildren();
  $("models-count").textContent = `${state.models.length} model${state.models.length === 1 ? "" : "s"}`;
  if (!state.models.length) {
    body.append(el("tr", {}, el("td", { colspan: "8", class: "muted", text: "No models installed yet. Use “Add models”." })));
    return;
  }
  for (const m of state.models) {
    const actions = el("td", { class: "actions" },
      m.registered  // only a models.yaml stanza has settings to edit (a LoRA, embedding or VAE of a 2.3 root has none)
        ? el("button", { type: "button", class: "secondary small", text: "Edit", "data-action": "edit", onclick: () => openEdit(m) })
        : null,
      m.kind === "main" && !m.default
        ? el("button", { type: "button", class: "secondary small", text: "Make default", "data-action": "default", onclick: () => makeDefault(m) })
        : null,
      m.convertible
        ? el("button", { type: "button", class: "small", text: "Convert to Diffusers", "data-action": "convert", onclick: () => openConvert(m) })
        : null,
      el("button", { type: "button", class: "danger small", text: "Delete", "data-action": "delete", onclick: () => openDelete(m) }),
    );
    body.append(el("tr", { "data-name": m.name, class: "model-row" },
      el("td", { class: "default-mark", title: m.default ? "default model" : "", text: m.default ? "★" : "" }),
      el("td", { class: "model-name", title: m.location },
        el("span", { text: m.name }),
        m.in_place
          ? el("div", { class: "model-location" },
            el("span", { class: "pill in-place", title: "registered where it is, outside the root: never copied, never deleted by a purge", text: "in place" }),
            " ", el("span", { class: "mono muted model-path", text: m.location }))
          : null),
      el("td", { class: "model-kind", text: m.kind }),
      el("td", { class: "model-base", text: m.base || "" }),
      el("td", { class: "model-format", text: m.format }),
      el("td", { class: "num", text: humanBytes(m.size) }),
      el("td", { class: "muted model-description", text: m.description }),
      actions,
    ));
  }
}

async function makeDefault(m) {
  try {
    await api("POST", `/api/models/${encodeURIComponent(m.name)}/default`);
    await loadModels();
  } catch (e) { showBanner(e.message); }
}

let editing = null;
function openEdit(m) {
  editing = m;
  $("edit-title").textContent = m.name;
  $("edit-name").value = m.name;
  $("edit-description").value = m.description;
  $("edit-vae").value = m.vae;
  $("edit-config").value = m.config;
  $("edit-config-label").classList.toggle("hidden", m.format === "diffusers");
  $("edit-width").value = m.width || "";
  $("edit-height").value = m.height || "";
  $("edit-error").textContent = "";
  $("edit-dialog").showModal();
}

async function saveEdit(ev) {
  ev.preventDefault();
  const m = editing;
  const changes = {};
  const name = $("edit-name").value.trim();
  if (name !== m.name) changes.name = name;
  if ($("edit-description").value !== m.description) changes.description = $("edit-description").value;
  if ($("edit-vae").value.trim() !== m.vae) changes.vae = $("edit-vae").value.trim();
  if (m.format !== "diffusers" && $("edit-config").value.trim() !== m.config) changes.config = $("edit-config").value.trim();
  for (const k of ["width", "height"]) {
    const v = $(`edit-${k}`).value.trim();
    if (v !== "" && Number(v) !== m[k]) changes[k] = Number(v);
  }
  if (!Object.keys(changes).length) { $("edit-dialog").close(); return; }
  try {
    await api("PATCH", `/api/models/${encodeURIComponent(m.name)}`, changes);
    $("edit-dialog").close();
    await loadModels();
  } catch (e) { $("edit-error").textContent = e.message; }
}

let deleting = null;
function openDelete(m) {
  deleting = m;
  $("delete-title").textContent = m.name;
  $("delete-purge").checked = false;
  $("delete-error").textContent = "";
  $("delete-dialog").showModal();
}

async function confirmDelete(ev) {
  ev.preventDefault();
  const purge = $("delete-purge").checked ? "1" : "0";
  try {
    const r = await api("DELETE", `/api/models/${encodeURIComponent(deleting.name)}?purge=${purge}`);
    $("delete-dialog").close();
    if (r.kept && r.kept.length) showBanner(`Deleted ${deleting.name}; kept ${r.kept.map((k) => `${k.path} (${k.why})`).join(", ")}`);
    await loadModels();
    loadStarters();
  } catch (e) { $("delete-error").textContent = e.message; }
}

let converting = null;
function openConvert(m) {
  converting = m;
  $("convert-title").textContent = m.name;
  $("convert-delete").checked = false;
  $("convert-error").textContent = "";
  $("convert-dialog").showModal();
}

async function confirmConvert(ev) {
  ev.preventDefault();
  try {
    await api("POST", `/api/models/${encodeURIComponent(converting.name)}/convert`, { delete_original: $("convert-delete").checked });
    $("convert-dialog").close();
    showTab("progress");
  } catch (e) { $("convert-error").textContent = e.message; }
}

// --- adding ------------------------------------------------------------------------------------

function addPending(line, via) {
  line = line.trim();
  if (!line || state.pending.some((p) => p.line === line)) return;
  state.pending.push({ line, via });
  renderPending();
}

function renderPending() {
  const list = $("pending-list");
  list.replaceChildren();
  const starters = state.starters.filter((s) => s.checked);
  if (!state.pending.length && !starters.length) {
    list.append(el("li", { class: "muted", text: "Nothing yet: add an import, tick found files or starter models." }));
    return;
  }
  for (const p of state.pending) {
    list.append(el("li", { class: "pending-item" },
      el("span", { class: "mono", text: p.line }),
      el("span", { class: "muted", text: p.via }),
      el("button", { type: "button", class: "secondary small", text: "Remove", onclick: () => { state.pending = state.pending.filter((q) => q !== p); renderPending(); } }),
    ));
  }
  for (const s of starters) {
    list.append(el("li", { class: "pending-item" }, el("span", { class: "mono", text: s.key }), el("span", { class: "muted", text: `starter, ${humanBytes(s.size)}` })));
  }
}

async function loadStarters() {
  try {
    const data = await api("GET", "/api/starters");
    const checked = new Set(state.starters.filter((s) => s.checked).map((s) => s.key));
    state.starters = data.starters.map((s) => ({ ...s, checked: checked.has(s.key) && !s.installed }));
    renderStarters();
  } catch (e) { showBanner(e.message); }
}

function renderStarters() {
  const body = $("starters-body");
  body.replaceChildren();
  if (!state.starters.length) {
    body.append(el("tr", {}, el("td", { colspan: "4", class: "muted", text: "The starter catalogue is empty." })));
    return;
  }
  for (const s of state.starters) {
    const box = el("input", { type: "checkbox", checked: s.checked, disabled: s.installed, "data-key": s.key,
      onchange: (ev) => { s.checked = ev.target.checked; renderPending(); } });
    body.append(el("tr", { "data-key": s.key },
      el("td", {}, box),
      el("td", {}, el("span", { text: s.key }), s.installed ? el("span", { class: "pill installed", text: "installed" }) : null,
        s.recommended && !s.installed ? el("span", { class: "pill", text: "recommended" }) : null,
        s.requires ? el("span", { class: "pill", title: "InvokeAI 2.3.5 cannot run it: not installed into this root", text: "needs InvokeAI 3+" }) : null),
      el("td", { class: "muted", text: s.description }),
      el("td", { class: "num", text: humanBytes(s.size) }),
    ));
  }
}

async function searchFolder() {
  const folder = $("search-input").value.trim();
  if (!folder) return;
  hideComplete("search-complete");
  try {
    const data = await api("POST", "/api/scan", { folder });
    const body = $("search-body");
    body.replaceChildren();
    if (!data.files.length) {
      body.append(el("tr", {}, el("td", { colspan: "5", class: "muted", text: `No model files below ${data.folder}.` })));
    }
    for (const f of data.files) {
      body.append(el("tr", { "data-path": f.path },
        el("td", {}, el("input", { type: "checkbox", class: "found", value: f.path, disabled: f.installed })),
        el("td", { class: "mono", text: f.relative, title: f.path }),
        el("td", { text: f.kind }),
        el("td", { class: "num", text: humanBytes(f.size) }),
        el("td", {}, f.installed ? el("span", { class: "pill installed", text: "installed" }) : null),
      ));
    }
    $("search-all").checked = false;
    $("search-results").classList.remove("hidden");
  } catch (e) { showBanner(e.message); }
}

async function startInstall() {
  const typed = $("add-input").value.trim();
  if (typed) { addPending(typed, "typed"); $("add-input").value = ""; }
  const body = {
    items: state.pending.map((p) => p.line),
    starters: state.starters.filter((s) => s.checked).map((s) => s.key),
    convert: $("opt-convert").checked,
    in_place: $("opt-in-place").checked, // with convert the server refuses both in one line (shown in the banner)
  };
  const scan = $("autoscan-input").value.trim();
  if ($("opt-autoscan").checked) {
    if (!scan) { showBanner("Give the autoscan folder first."); return; }
    body.scan_dir = scan;
    body.autoscan = true;
  }
  try {
    await api("POST", "/api/install", body);
    state.pending = [];
    for (const s of state.starters) s.checked = false;
    renderPending();
    renderStarters();
    showTab("progress");
  } catch (e) { showBanner(e.message); }
}

// --- path completion -------------------------------------------------------------------------

const completers = {};
function attachCompletion(inputId, listId, { dirsOnly = false } = {}) {
  const input = $(inputId), list = $(listId);
  const c = { entries: [], active: -1, base: "", timer: null, seq: 0 };
  completers[listId] = c;
  const looksLikePath = (t) => /^(\/|~|\.|[A-Za-z]:)/.test(t);
  async function refresh() {
    const text = input.value;
    if (!looksLikePath(text)) { hideComplete(listId); return; }
    const mine = ++c.seq;
    let data;
    try { data = await api("GET", `/api/complete?path=${encodeURIComponent(text)}`); } catch (e) { return; }
    if (mine !== c.seq) return;
    c.entries = data.entries.filter((e) => !dirsOnly || e.dir);
    c.base = data.base || "";
    c.active = -1;
    list.replaceChildren();
    if (!c.entries.length || (c.entries.length === 1 && c.base + c.entries[0].name === text)) { hideComplete(listId); return; }
    c.entries.forEach((e, i) => {
      list.append(el("li", { class: (e.dir ? "dir" : "") + (e.model ? " model" : ""), role: "option", text: e.name,
        onmousedown: (ev) => { ev.preventDefault(); choose(i); } }));
    });
    list.classList.remove("hidden");
  }
  function choose(i) {
    const e = c.entries[i];
    if (!e) return;
    input.value = c.base + e.name + (e.dir ? "/" : "");
    hideComplete(listId);
    input.focus();
    if (e.dir) refresh();
  }
  function highlight(i) {
    c.active = (i + c.entries.length) % c.entries.length;
    [...list.children].forEach((li, j) => li.classList.toggle("active", j === c.active));
  }
  input.addEventListener("input", () => { clearTimeout(c.timer); c.timer = setTimeout(refresh, 120); });
  input.addEventListener("keydown", (ev) => {
    const open = !list.classList.contains("hidden");
    if (ev.key === "ArrowDown" && open) { ev.preventDefault(); highlight(c.active + 1); }
    else if (ev.key === "ArrowUp" && open) { ev.preventDefault(); highlight(c.active - 1); }
    else if (ev.key === "Tab" && open && c.entries.length) { ev.preventDefault(); choose(c.active >= 0 ? c.active : 0); }
    else if (ev.key === "Enter" && open && c.active >= 0) { ev.preventDefault(); choose(c.active); }
    else if (ev.key === "Escape") hideComplete(listId);
  });
  input.addEventListener("blur", () => setTimeout(() => hideComplete(listId), 150));
}
function hideComplete(listId) { $(listId).classList.add("hidden"); }

// --- progress ------------------------------------------------------------------------------------

function setJob(job) {
  state.job = job;
  state.items = new Map();
  if (job) for (const it of job.items) state.items.set(it.id, it);
  setQuestion(job ? job.question : null);
  renderJob();
}

function renderJob() {
  const job = state.job;
  const running = !!(job && job.running);
  $("busy-badge").classList.toggle("hidden", !running);
  $("cancel-button").classList.toggle("hidden", !running);
  document.body.dataset.busy = running ? "1" : "0";
  document.body.dataset.job = job ? String(job.id) : "";
  const list = $("job-items");
  if (!job) {
    $("job-title").textContent = "Nothing running";
    $("job-summary").textContent = "";
    list.replaceChildren();
    return;
  }
  const what = job.kind === "convert" ? "Conversion" : "Install";
  $("job-title").textContent = running ? `${what} running` : (job.cancelled ? `${what} cancelled` : `${what} finished`);
  const counts = {};
  for (const it of state.items.values()) counts[it.status] = (counts[it.status] || 0) + 1;
  $("job-summary").textContent = Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(", ");
  const existing = new Map([...list.children].map((li) => [li.dataset.item, li]));
  for (const [id, li] of existing) if (!state.items.has(id)) { li.remove(); existing.delete(id); }
  for (const it of state.items.values()) {
    const node = renderItem(it);
    const old = existing.get(it.id);
    if (old) old.replaceWith(node); else list.append(node);
  }
}

function renderItem(it) {
  const head = el("div", { class: "item-head" },
    el("span", { class: `pill ${it.status} item-status`, text: it.status }),
    el("span", { class: "item-label", text: it.label }),
    el("span", { class: "item-stage", text: it.stage ? `${it.stage}${it.detail ? ": " + it.detail : ""}` : (it.name && it.status === "installed" ? `as ${it.name}` : it.message || "") }),
  );
  const li = el("li", { "data-item": it.id, "data-status": it.status, class: "job-item" }, head);
  for (const f of Object.values(it.files || {})) {
    const pct = f.total > 0 ? Math.min(100, (100 * f.done) / f.total) : (f.finished ? 100 : 0);
    const bar = el("div");
    bar.style.width = `${pct.toFixed(1)}%`;
    const eta = f.speed > 0 && f.total > 0 && !f.finished ? `, ${humanTime((f.total - f.done) / f.speed)} left` : "";
    const speed = f.speed > 0 && !f.finished ? `, ${humanBytes(f.speed)}/s` : "";
    li.append(el("div", { class: "file" },
      el("span", { class: "mono", text: f.name }),
      el("div", { class: "bar" }, bar),
      el("span", { class: "stats", text: `${humanBytes(f.done)} / ${humanBytes(f.total)}${speed}${eta}` }),
    ));
  }
  for (const n of it.notes || []) li.append(el("p", { class: "note-line", text: n }));
  if (it.error) li.append(el("p", { class: "error-line item-error", text: it.error }));
  return li;
}

function setQuestion(q) {
  state.question = q;
  const dlg = $("question-dialog");
  if (!q || state.answeredQids.has(q.qid)) {
    if (dlg.open) dlg.close();
    return;
  }
  const it = state.items.get(q.item);
  $("question-item").textContent = it ? it.label : q.item;
  $("question-prompt").textContent = q.prompt;
  const box = $("question-choices");
  box.replaceChildren();
  q.choices.forEach((choice, i) => {
    box.append(el("button", { type: "button", class: choice === "skip" ? "secondary" : "primary", "data-choice": choice,
      text: q.labels[i] || choice, onclick: () => answer(q, choice) }));
  });
  if (!dlg.open) dlg.showModal();
}

async function answer(q, choice) {
  state.answeredQids.add(q.qid);
  $("question-dialog").close();
  try { await api("POST", "/api/answer", { qid: q.qid, choice }); }
  catch (e) { showBanner(e.message); }
}

function onMessage(msg) {
  switch (msg.type) {
    case "Snapshot":
      setJob(msg.job);
      break;
    case "JobStarted":
      setJob(msg.job);
      showTab("progress");
      break;
    case "event":
      if (!state.job || msg.job_id !== state.job.id) break;
      if (msg.item) state.items.set(msg.item.id, msg.item);
      if (msg.event.type === "PlanStarted") {
        for (const [i, id] of msg.event.items.entries()) {
          if (!state.items.has(id)) state.items.set(id, { id, label: msg.event.labels[i], status: "waiting", files: {}, notes: [] });
        }
      }
      if (msg.event.type === "QuestionAsked") setQuestion(msg.question);
      if (msg.event.type === "ItemRegistered" || msg.event.type === "ItemRemoved") loadModels();
      renderJob();
      break;
    case "QuestionAnswered":
      state.answeredQids.add(msg.qid);
      setQuestion(null);
      break;
    case "JobFinished":
      setJob(msg.job);
      loadStarters();
      break;
    case "ModelsChanged":
      loadModels();
      break;
    case "ServerStopping":
      showBanner("The model manager was stopped (Ctrl-C). Start it again with `invokeai-model-install web`.");
      break;
    default:
      break;
  }
}

function connectEvents() {
  const source = new EventSource("/api/events");
  source.onmessage = (ev) => {
    try { onMessage(JSON.parse(ev.data)); } catch (e) { console.error(e); }
  };
  source.onopen = () => { document.body.dataset.connected = "1"; };
  source.onerror = () => { document.body.dataset.connected = "0"; };
}

// --- start ---------------------------------------------------------------------------------------

async function start() {
  for (const b of document.querySelectorAll(".tab")) b.addEventListener("click", () => showTab(b.dataset.tab));
  $("banner-close").addEventListener("click", () => $("banner").classList.add("hidden"));
  $("reload-models").addEventListener("click", loadModels);
  $("edit-form").addEventListener("submit", saveEdit);
  $("edit-cancel").addEventListener("click", () => $("edit-dialog").close());
  $("delete-form").addEventListener("submit", confirmDelete);
  $("delete-cancel").addEventListener("click", () => $("delete-dialog").close());
  $("convert-form").addEventListener("submit", confirmConvert);
  $("convert-cancel").addEventListener("click", () => $("convert-dialog").close());
  $("question-dialog").addEventListener("cancel", (ev) => ev.preventDefault()); // Esc does not lose the question
  $("add-button").addEventListener("click", () => { addPending($("add-input").value, "import"); $("add-input").value = ""; });
  $("add-input").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && $("add-complete").classList.contains("hidden")) { addPending($("add-input").value, "import"); $("add-input").value = ""; }
  });
  $("search-button").addEventListener("click", searchFolder);
  $("search-input").addEventListener("keydown", (ev) => { if (ev.key === "Enter" && $("search-complete").classList.contains("hidden")) searchFolder(); });
  $("search-all").addEventListener("change", (ev) => { for (const b of document.querySelectorAll("input.found:not(:disabled)")) b.checked = ev.target.checked; });
  $("search-add").addEventListener("click", () => {
    for (const b of document.querySelectorAll("input.found:checked")) { addPending(b.value, "found"); b.checked = false; }
  });
  $("install-button").addEventListener("click", startInstall);
  $("cancel-button").addEventListener("click", async () => {
    try { await api("POST", "/api/cancel"); } catch (e) { showBanner(e.message); }
  });
  attachCompletion("add-input", "add-complete");
  attachCompletion("search-input", "search-complete", { dirsOnly: true });
  attachCompletion("autoscan-input", "autoscan-complete", { dirsOnly: true });
  showTab("models");
  try {
    const st = await api("GET", "/api/state");
    $("root-path").textContent = st.root;
    $("delete-models-dir").textContent = st.models_dir;
    if (st.autoscan) $("autoscan-input").value = st.autoscan;
    setJob(st.job);
  } catch (e) { showBanner(e.message); }
  await Promise.all([loadModels(), loadStarters()]);
  connectEvents();
  document.body.dataset.ready = "1";
}

document.addEventListener("DOMContentLoaded", start);
