// The page: opens a bundle (file, drop, URL or ?bundle=), then search, map, CIF queries,
// zero-shot scores and fine-tunes — all computed by xtal in worker.js.
import { XtalClient } from "./client.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const client = new XtalClient();
const app = { client, bundle: null, lastExport: null, firstResultMs: null, losses: [] };
window.xtalApp = app;

function setState(state) { document.body.dataset.state = state; }

function status(text) { $("status").textContent = text; }

function showError(box, message) {
  $(box).textContent = message;
  $(box).hidden = false;
}

function escape(text) {
  return String(text ?? "").replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function deviceLine(device) {
  const where = device.kind === "webgpu" ? device.description : "the CPU";
  return `Computing on ${where}` + (device.fallbackReason ? ` (WebGPU unavailable: ${device.fallbackReason})` : "");
}

// ---- opening a bundle -----------------------------------------------------------------------

async function fetchWithProgress(url) {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status} ${response.statusText}`);
  const total = Number(response.headers.get("content-length")) || 0;
  const reader = response.body.getReader();
  const parts = [];
  let received = 0;
  $("progress").hidden = false;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    parts.push(value);
    received += value.length;
    if (total) $("progress").value = received / total;
  }
  const bytes = new Uint8Array(received);
  let at = 0;
  for (const p of parts) { bytes.set(p, at); at += p.length; }
  return bytes.buffer;
}

async function openBundle(source, name) {
  setState("loading");
  $("error").hidden = true;
  $("progress").hidden = false;
  $("progress").removeAttribute("value");
  status(`Opening ${name}…`);
  try {
    const bytes = await source();
    status(`Verifying ${name} (${(bytes.byteLength / 2 ** 20).toFixed(1)} MiB) and building its model…`);
    $("progress").removeAttribute("value");
    const loaded = await client.load(bytes, $("device").value);
    app.bundle = { name, ...loaded };
    app.hits = [];
    app.queryPoint = null;
    // Results of the previously opened bundle are not this one's.
    for (const id of ["prediction", "features-result", "cif-results", "zero-shot-results", "search-results", "viewer-panel", "cif-tensor", "text-tensor"]) $(id).hidden = true;
    showSummary();
    drawMap();
    $("tools").hidden = false;
    $("download").disabled = true;
    status(`${deviceLine(loaded.device)} · ${name} ready`);
    setState("ready");
    return true;
  } catch (e) {
    showError("error", `Could not open ${name}: ${e.message}`);
    status(`${name} was not opened.`);
    $("tools").hidden = app.bundle === null;
    setState("error");
    return false;
  } finally {
    $("progress").hidden = true;
  }
}

function structureLine(s) {
  if (s.structure_input === "ftcp_tensor") {
    return `CIF → FTCP tensor → six self-supervised blocks (${s.blocks.map((b) => `${b.kind} ${b.dim}`).join(", ")})`;
  }
  if (s.structure_input === "graph") {
    const g = s.graph;
    return `CIF → crystal graph (${g.graph.cutoff} Å) → ${g.backbone.toUpperCase()}, ${g.layers} layers of ${g.hidden} (this bundle embeds CIFs)`;
  }
  return s.can_embed_cif ? "CIF → FTCP (this bundle embeds CIFs)" : "precomputed vectors only (no CIF embedding)";
}

function showSummary() {
  const s = app.bundle.summary;
  const rows = [
    ["bundle", `${app.bundle.name} (${(s.size / 2 ** 20).toFixed(1)} MiB, format v${s.format_version}, xtal ${s.xtal_version}, ${s.created})`],
    ["model", `${s.parameters.toLocaleString()} parameters, ${s.embed_dim}-D embeddings, weights ${s.weights_dtype}`],
    s.target
      ? ["predicts", `${s.target.name}${s.target.source ? ` (${s.target.source} records)` : ""}, training mean ${s.target.scale.mean.toFixed(3)}`]
      : s.kind === "ssl"
        ? ["features", `${s.embed_dim}-D, each block's part normalised per material`]
        : ["text", s.text_encoder],
    ["structures", structureLine(s)],
    ["index", s.index ? `${s.index.entries} entries${s.index.dataset ? ` from ${s.index.dataset}` : ""}${s.index.map ? ", with a map" : ""}` : "none"],
    ["device", deviceLine(app.bundle.device)],
  ];
  if (s.fine_tunes) rows.push(["fine-tunes", `${s.fine_tunes} in this page`]);
  $("summary").innerHTML = rows.map(([k, v]) => `<dt>${k}</dt><dd>${escape(v)}</dd>`).join("");
  $("summary").hidden = false;
  $("cif-search").disabled = $("zero-shot").disabled = !s.can_embed_cif;
  // A property bundle predicts from a CIF, an SSL bundle extracts features; search, phrases
  // and fine-tuning need a CLIP bundle, whose tensor head (if any) predicts from a CIF or
  // from the search box's description.
  for (const id of ["search-panel", "map-panel", "tune-panel", "phrases", "cif-search", "zero-shot"]) $(id).hidden = s.kind !== "clip";
  const head = s.tensor_head;
  $("predict").hidden = !(s.kind === "property" || (head && head.modality === "graph"));
  $("predict").disabled = !(s.can_predict || head);
  $("predict").textContent = head ? `Predict ${head.components.join(", ")}` : "Predict property";
  $("predict-text").hidden = !(head && head.modality === "text");
  $("predict-text").textContent = head ? `Predict ${head.components.join(", ")}` : "";
  $("features").hidden = s.kind !== "ssl";
}

$("file").addEventListener("change", () => {
  const f = $("file").files[0];
  if (f) openBundle(() => f.arrayBuffer(), f.name);
});
$("url-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const url = $("url").value.trim();
  if (url) openBundle(() => fetchWithProgress(url), url);
});
document.addEventListener("dragover", (e) => { e.preventDefault(); document.body.classList.add("dragging"); });
document.addEventListener("dragleave", () => document.body.classList.remove("dragging"));
document.addEventListener("drop", (e) => {
  e.preventDefault();
  document.body.classList.remove("dragging");
  const f = e.dataTransfer.files[0];
  if (f) openBundle(() => f.arrayBuffer(), f.name);
});

// ---- search ---------------------------------------------------------------------------------

function fillResults(table, results) {
  const tbody = $(table).querySelector("tbody");
  const viewable = (row) => app.bundle.records?.has_structure?.[row] === true;
  tbody.innerHTML = results.map((r) =>
    `<tr${viewable(r.row) ? ` data-row="${r.row}" title="click for a 3-D view"` : ""}><td>${r.rank}</td><td>${escape(r.id)}</td><td>${escape(r.formula ?? "–")}</td>` +
    `<td>${r.score.toFixed(3)}</td><td><div class="desc" title="${escape(r.description)}">${escape(r.description)}</div></td></tr>`).join("");
  $(table).hidden = false;
}

// ---- 3-D view of a structure (3Dmol.js, loaded on first use) ---------------------------------

let viewer = null;

async function showStructure(cif, title) {
  const $3Dmol = await import("./vendor/3dmol/3Dmol.es6-min.js");
  $("viewer-panel").hidden = false;
  viewer ??= $3Dmol.createViewer($("viewer"), { backgroundColor: "white" });
  viewer.clear();
  const model = viewer.addModel(cif, "cif", { doAssembly: true, normalizeAssembly: true });
  viewer.setStyle({}, { sphere: { scale: 0.35, colorscheme: "Jmol" }, stick: { radius: 0.12, colorscheme: "Jmol" } });
  viewer.addUnitCell(model, { box: { color: "black" } });
  viewer.zoomTo();
  viewer.render();
  const atoms = model.selectedAtoms({});
  const counts = {};
  for (const a of atoms) counts[a.elem] = (counts[a.elem] ?? 0) + 1;
  $("viewer-title").textContent = title;
  $("viewer-legend").textContent = Object.entries(counts).map(([e, n]) => `${e} ${n}`).join(" · ") + ` (${atoms.length} atoms in the cell)`;
  app.viewed = { title, atoms: atoms.length, elements: counts };
  return app.viewed;
}

for (const table of ["search-results", "cif-results"]) {
  $(table).addEventListener("click", async (e) => {
    const tr = e.target.closest("tr[data-row]");
    if (!tr) return;
    const row = Number(tr.dataset.row);
    const r = app.bundle.records;
    try {
      const cif = await app.client.structure(row);
      if (cif == null) throw new Error("the bundle carries no structure for it");
      await showStructure(cif, `${r.formulas[row] ?? ""} (${r.ids[row]})`);
    } catch (err) {
      showError("error", `Could not show ${r.ids[row]}: ${err.message}`);
    }
  });
}

$("view-cif").addEventListener("click", async () => {
  $("cif-error").hidden = true;
  try {
    await showStructure($("cif").value, "the pasted CIF");
  } catch (err) {
    showError("cif-error", err.message);
  }
});

async function search(query, k) {
  $("query").value = query;
  const started = performance.now();
  const found = await client.search(query, k);
  fillResults("search-results", found.results);
  $("search-results").dataset.query = query;
  app.hits = found.results.map((r) => r.row);
  app.queryPoint = found.map_position;
  drawMap();
  app.firstResultMs ??= performance.now();
  status(`${deviceLine(app.bundle.device)} · "${query}": ${found.results.length} results in ` +
    `${(performance.now() - started).toFixed(0)} ms · first result ${(app.firstResultMs / 1000).toFixed(1)} s after the page opened`);
  return found;
}

$("search-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  try {
    await search($("query").value, Number($("k").value) || 10);
  } catch (err) {
    showError("error", `Search failed: ${err.message}`);
  }
});

// ---- map ------------------------------------------------------------------------------------

function mapLayout() {
  const m = app.bundle?.map;
  if (!m) return null;
  const canvas = $("map");
  const xs = [], ys = [];
  for (let i = 0; i < m.length; i += 2) { xs.push(m[i]); ys.push(m[i + 1]); }
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  const [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  const pad = 14;
  const sx = (canvas.width - 2 * pad) / (x1 - x0 || 1);
  const sy = (canvas.height - 2 * pad) / (y1 - y0 || 1);
  const at = (x, y) => [pad + (x - x0) * sx, canvas.height - pad - (y - y0) * sy];
  return { xs, ys, at };
}

function drawMap() {
  const canvas = $("map");
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const layout = mapLayout();
  $("map-panel").hidden = !layout;
  if (!layout) return;
  const { xs, ys, at } = layout;
  ctx.fillStyle = "rgba(74, 115, 201, 0.55)";
  for (let i = 0; i < xs.length; i++) {
    const [x, y] = at(xs[i], ys[i]);
    ctx.beginPath(); ctx.arc(x, y, 2.6, 0, 2 * Math.PI); ctx.fill();
  }
  ctx.strokeStyle = "#e07b00"; ctx.lineWidth = 2;
  for (const row of app.hits ?? []) {
    const [x, y] = at(xs[row], ys[row]);
    ctx.beginPath(); ctx.arc(x, y, 6, 0, 2 * Math.PI); ctx.stroke();
  }
  if (app.queryPoint) {
    const [x, y] = at(app.queryPoint[0], app.queryPoint[1]);
    star(ctx, x, y, 10, "#c0182b");
  }
}

function star(ctx, x, y, r, color) {
  ctx.beginPath();
  for (let i = 0; i < 10; i++) {
    const a = -Math.PI / 2 + (i * Math.PI) / 5;
    const rr = i % 2 ? r * 0.45 : r;
    ctx.lineTo(x + rr * Math.cos(a), y + rr * Math.sin(a));
  }
  ctx.closePath();
  ctx.fillStyle = color; ctx.fill();
  ctx.strokeStyle = "#fff"; ctx.lineWidth = 1; ctx.stroke();
}

$("map").addEventListener("mousemove", (e) => {
  const layout = mapLayout();
  const tip = $("tooltip");
  if (!layout) return;
  const canvas = $("map");
  const rect = canvas.getBoundingClientRect();
  const px = (e.clientX - rect.left) * (canvas.width / rect.width);
  const py = (e.clientY - rect.top) * (canvas.height / rect.height);
  let best = -1, bestD = 36;
  for (let i = 0; i < layout.xs.length; i++) {
    const [x, y] = layout.at(layout.xs[i], layout.ys[i]);
    const d = (x - px) ** 2 + (y - py) ** 2;
    if (d < bestD) { best = i; bestD = d; }
  }
  if (best < 0) { tip.hidden = true; return; }
  const r = app.bundle.records;
  tip.innerHTML = `<b>${escape(r.ids[best])}</b> ${escape(r.formulas[best] ?? "")}<br>${escape(r.descriptions[best].slice(0, 140))}…`;
  tip.style.left = `${e.clientX - rect.left + 12}px`;
  tip.style.top = `${e.clientY - rect.top + 12}px`;
  tip.hidden = false;
});
$("map").addEventListener("mouseleave", () => { $("tooltip").hidden = true; });

// ---- CIF queries ----------------------------------------------------------------------------

$("cif-file").addEventListener("change", async () => {
  const f = $("cif-file").files[0];
  if (f) $("cif").value = await f.text();
});

async function cifSearch() {
  $("cif-error").hidden = true;
  try {
    const found = await client.searchCif($("cif").value, Number($("k").value) || 10);
    fillResults("cif-results", found.results);
    app.hits = found.results.map((r) => r.row);
    app.queryPoint = found.map_position;
    drawMap();
    return found;
  } catch (e) {
    showError("cif-error", e.message);
    throw e;
  }
}

async function zeroShot() {
  $("cif-error").hidden = true;
  try {
    const phrases = $("phrases").value.split("\n").map((p) => p.trim()).filter(Boolean);
    const rows = await client.zeroShot($("cif").value, phrases);
    $("zero-shot-results").querySelector("tbody").innerHTML = rows.map((r) =>
      `<tr><td>${escape(r.phrase)}</td><td>${r.score.toFixed(3)}</td><td>${(100 * r.probability).toFixed(1)} %</td></tr>`).join("");
    $("zero-shot-results").hidden = false;
    return rows;
  } catch (e) {
    showError("cif-error", e.message);
    throw e;
  }
}

/** Table rows of a tensor head's components. */
function tensorRows(p) {
  return p.components.map((c) => `<tr><td>${escape(c.name)}</td><td>${c.value.toFixed(4)}</td></tr>`).join("");
}

/** A tensor head over text embeddings, on the search box's description. */
async function predictFromText() {
  $("error").hidden = true;
  try {
    const p = await client.predictTensor($("query").value);
    $("text-tensor").querySelector("tbody").innerHTML = tensorRows(p);
    $("text-tensor").hidden = false;
    return p;
  } catch (e) {
    showError("error", `Prediction failed: ${e.message}`);
    throw e;
  }
}

async function predict() {
  $("cif-error").hidden = true;
  try {
    if (app.bundle.summary.tensor_head) {
      const p = await client.predictTensor($("cif").value);
      $("cif-tensor").querySelector("tbody").innerHTML = tensorRows(p);
      $("cif-tensor").hidden = false;
      return p;
    }
    const p = await client.predict($("cif").value);
    $("prediction").textContent = `${p.target}: ${p.prediction.toFixed(4)}`;
    $("prediction").hidden = false;
    return p;
  } catch (e) {
    showError("cif-error", e.message);
    throw e;
  }
}

/** `.npy` bytes (float32, little-endian) of `values` with `shape`. */
function npyBytes(values, shape) {
  let header = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(", ")}${shape.length === 1 ? "," : ""}), }`;
  // Magic (6) + version (2) + length (2) + header + "\n", padded to a multiple of 64.
  header += " ".repeat(63 - ((10 + header.length) % 64)) + "\n";
  const out = new Uint8Array(10 + header.length + 4 * values.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, header.length & 0xff, header.length >> 8]);
  out.set(new TextEncoder().encode(header), 10);
  new Float32Array(out.buffer, 10 + header.length).set(values);
  return out;
}

async function extractFeatures() {
  $("cif-error").hidden = true;
  try {
    const f = await client.features($("cif").value);
    let at = 0;
    const rows = app.bundle.summary.blocks.map((b) => {
      const part = f.slice(at, at + b.dim);
      at += b.dim;
      return `<tr><td>${escape(b.kind)}</td><td>${b.dim}</td><td>${part.slice(0, 4).map((x) => x.toFixed(4)).join(" ")} …</td></tr>`;
    });
    $("features-summary").textContent = `${f.length} features of the CIF's first structure (as xtal embed --bundle B cif writes them)`;
    $("features-blocks").querySelector("tbody").innerHTML = rows.join("");
    const link = $("features-download");
    if (link.href) URL.revokeObjectURL(link.href);
    link.href = URL.createObjectURL(new Blob([npyBytes(f, [1, f.length])], { type: "application/octet-stream" }));
    $("features-result").hidden = false;
    return f;
  } catch (e) {
    showError("cif-error", e.message);
    throw e;
  }
}

$("cif-search").addEventListener("click", () => cifSearch().catch(() => {}));
$("features").addEventListener("click", () => extractFeatures().catch(() => {}));
$("predict").addEventListener("click", () => predict().catch(() => {}));
$("predict-text").addEventListener("click", () => predictFromText().catch(() => {}));
$("zero-shot").addEventListener("click", () => zeroShot().catch(() => {}));

// ---- fine-tune ------------------------------------------------------------------------------

$("pairs-file").addEventListener("change", async () => {
  const f = $("pairs-file").files[0];
  if (f) $("pairs").value = await f.text();
});

function drawLoss() {
  const canvas = $("loss");
  const ctx = canvas.getContext("2d");
  const losses = app.losses;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  const [left, right, top, bottom] = [48, 12, 12, 28];
  ctx.strokeStyle = "#9aa7bd"; ctx.lineWidth = 1;
  ctx.beginPath();
  ctx.moveTo(left, top); ctx.lineTo(left, canvas.height - bottom); ctx.lineTo(canvas.width - right, canvas.height - bottom);
  ctx.stroke();
  ctx.fillStyle = "#5b6577"; ctx.font = "12px system-ui";
  ctx.fillText("step", canvas.width - right - 28, canvas.height - 8);
  ctx.fillText("loss", left + 6, top + 10);
  if (losses.length === 0) return;
  const hi = Math.max(...losses), lo = Math.min(...losses);
  const span = hi - lo || 1;
  const [max, min] = [hi + 0.05 * span, lo - 0.05 * span];
  const steps = Math.max(app.tuneSteps ?? losses.length, 2);
  const x = (i) => left + (i / (steps - 1)) * (canvas.width - left - right);
  const y = (v) => top + (1 - (v - min) / (max - min)) * (canvas.height - top - bottom);
  ctx.fillText(hi.toFixed(2), 6, y(hi) + 4);
  ctx.fillText(lo.toFixed(2), 6, y(lo) + 4);
  ctx.fillText("1", left - 3, canvas.height - bottom + 14);
  ctx.fillText(String(steps), x(steps - 1) - 8, canvas.height - bottom + 14);
  ctx.strokeStyle = "#4a73c9"; ctx.lineWidth = 2;
  ctx.beginPath();
  losses.forEach((v, i) => (i ? ctx.lineTo(x(i), y(v)) : ctx.moveTo(x(i), y(v))));
  ctx.stroke();
}

async function fineTune(csv, settings) {
  $("pairs").value = csv;
  if (settings.steps) $("steps").value = settings.steps;
  if (settings.learning_rate) $("lr").value = settings.learning_rate;
  if (settings.batch_size) $("batch").value = settings.batch_size;
  $("norms").checked = Boolean(settings.layer_norms);
  const box = $("tune-status");
  box.classList.remove("error");
  box.hidden = false;
  $("tune").disabled = true;
  app.losses = [];
  app.tuneSteps = settings.steps;
  drawLoss();
  try {
    const { report, summary } = await client.fineTune(csv, settings, (step, loss) => {
      app.losses.push(loss);
      box.textContent = `step ${step}/${settings.steps}: loss ${loss.toFixed(4)}`;
      drawLoss();
    });
    app.bundle.summary = summary;
    showSummary();
    box.textContent = `Fine-tuned on ${report.pairs} pairs (${report.trainable_parameters.toLocaleString()} values trained): ` +
      `loss over the pairs ${report.loss_before.toFixed(4)} → ${report.loss_after.toFixed(4)}.`;
    $("download").disabled = false;
    return report;
  } catch (e) {
    box.textContent = `Fine-tune failed: ${e.message}`;
    box.classList.add("error");
    throw e;
  } finally {
    $("tune").disabled = false;
  }
}

$("tune").addEventListener("click", () => fineTune($("pairs").value, {
  steps: Number($("steps").value),
  learning_rate: Number($("lr").value),
  batch_size: Number($("batch").value),
  layer_norms: $("norms").checked,
}).catch(() => {}));

async function exportBundle() {
  const bytes = await client.exportBundle();
  app.lastExport = bytes;
  return bytes;
}

$("download").addEventListener("click", async () => {
  $("download").disabled = true;
  try {
    const bytes = await exportBundle();
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([bytes], { type: "application/zip" }));
    a.download = app.bundle.name.replace(/(\.xtal)?$/, "-fine-tuned.xtal").split("/").pop();
    a.click();
    setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
  } catch (e) {
    showError("error", `Export failed: ${e.message}`);
  } finally {
    $("download").disabled = false;
  }
});

Object.assign(app, { openBundle, fetchWithProgress, search, cifSearch, zeroShot, predict, predictFromText, extractFeatures, fineTune, exportBundle, showStructure });

// ---- start ----------------------------------------------------------------------------------

async function start() {
  if (params.get("device")) $("device").value = params.get("device");
  try {
    const device = await client.call("probeDevice", { device: $("device").value });
    status(deviceLine(device));
  } catch (e) {
    showError("error", `xtal's WebAssembly did not start (run web/build.sh first?): ${e.message}`);
    setState("error");
    return;
  }
  const url = params.get("bundle") ?? "demo.xtal";
  const explicit = params.has("bundle");
  if (!explicit) {
    const head = await fetch(url, { method: "HEAD" }).catch(() => null);
    if (!head?.ok) {
      status(`${$("status").textContent} · No demo bundle here (make one with: bash www/make-demo.sh) — open a bundle above.`);
      setState("idle");
      return;
    }
  }
  $("url").value = url;
  // The example query needs an index (a property bundle, or a CLIP one packed without, has none).
  if (await openBundle(() => fetchWithProgress(url), url) && app.bundle.summary.index) {
    await search($("query").value, Number($("k").value) || 10).catch((e) => showError("error", `Search failed: ${e.message}`));
  }
}

start();
