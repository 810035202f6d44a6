// The page: loads the wasm module and the model, classifies what is drawn, runs the test set,
// and (opened with `?selftest`, optionally `&backend=cpu`) runs the self-test without
// interaction, ending in `window.eieSelfTest` and `document.title` (see README.md).
import init, { Classifier, npyValues, npyLabels } from "./pkg/eie_web.js";

const MODEL = "lenet-300-100.eie.safetensors";
const params = new URLSearchParams(location.search);
const selfTest = params.has("selftest");
const wanted = params.get("backend") === "cpu" ? "cpu" : "webgpu";
const $ = (id) => document.getElementById(id);

async function fetchBytes(url) {
  const r = await fetch(url);
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return new Uint8Array(await r.arrayBuffer());
}

function argmax(v, start, n) {
  let best = 0;
  for (let i = 1; i < n; i++) if (v[start + i] > v[start + best]) best = i;
  return best;
}

function softmax(v) {
  const m = Math.max(...v);
  const e = v.map((x) => Math.exp(x - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
}

function fmtBytes(b) {
  return b >= 1 << 20 ? `${(b / (1 << 20)).toFixed(2)} MiB` : b >= 1024 ? `${(b / 1024).toFixed(1)} KiB` : `${b} B`;
}

function showLayers(clf) {
  const body = $("layers").querySelector("tbody");
  for (const l of JSON.parse(clf.layers)) {
    const tr = document.createElement("tr");
    const cells = [l.name, `${l.rows}×${l.cols}`, `${(100 * l.density).toFixed(1)} %`, l.bits, l.pes,
      l.activation, fmtBytes(l.dense_bytes), fmtBytes(l.compressed_bytes), `${l.ratio.toFixed(1)}×`];
    for (const c of cells) {
      const td = document.createElement("td");
      td.textContent = String(c);
      tr.appendChild(td);
    }
    body.appendChild(tr);
  }
}

// ---- Drawing: a 280×280 pad, reduced to MNIST's 28×28 the way MNIST was made: the digit's
// bounding box scaled to fit 20×20 (aspect kept), then placed so that its centre of mass is at
// the centre of the 28×28 image.
const pad = $("pad");
const pen = pad.getContext("2d");
function clearPad() {
  pen.fillStyle = "#000";
  pen.fillRect(0, 0, pad.width, pad.height);
}

function mnistInput() {
  const { width: w, height: h } = pad;
  const data = pen.getImageData(0, 0, w, h).data;
  let x0 = w, y0 = h, x1 = -1, y1 = -1;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      if (data[4 * (y * w + x)] > 0) {
        x0 = Math.min(x0, x); x1 = Math.max(x1, x);
        y0 = Math.min(y0, y); y1 = Math.max(y1, y);
      }
    }
  }
  const out = new Float32Array(784);
  if (x1 < 0) return out;
  const bw = x1 - x0 + 1, bh = y1 - y0 + 1;
  const scale = 20 / Math.max(bw, bh);
  const sw = Math.max(1, Math.round(bw * scale)), sh = Math.max(1, Math.round(bh * scale));
  const small = document.createElement("canvas");
  small.width = sw; small.height = sh;
  const sc = small.getContext("2d", { willReadFrequently: true });
  sc.imageSmoothingEnabled = true;
  sc.imageSmoothingQuality = "high";
  sc.drawImage(pad, x0, y0, bw, bh, 0, 0, sw, sh);
  const px = sc.getImageData(0, 0, sw, sh).data;
  let m = 0, mx = 0, my = 0;
  for (let y = 0; y < sh; y++) {
    for (let x = 0; x < sw; x++) {
      const v = px[4 * (y * sw + x)] / 255;
      m += v; mx += v * x; my += v * y;
    }
  }
  const ox = Math.round(14 - (m > 0 ? mx / m : sw / 2));
  const oy = Math.round(14 - (m > 0 ? my / m : sh / 2));
  for (let y = 0; y < sh; y++) {
    for (let x = 0; x < sw; x++) {
      const tx = x + ox, ty = y + oy;
      if (tx >= 0 && tx < 28 && ty >= 0 && ty < 28) out[ty * 28 + tx] = px[4 * (y * sw + x)] / 255;
    }
  }
  return out;
}

function showPreview(x) {
  const c = $("preview").getContext("2d");
  const img = c.createImageData(28, 28);
  for (let i = 0; i < 784; i++) {
    const v = Math.round(255 * x[i]);
    img.data.set([v, v, v, 255], 4 * i);
  }
  c.putImageData(img, 0, 0);
}

function showResult(logits, ms) {
  const p = softmax(Array.from(logits));
  const top = argmax(p, 0, p.length);
  $("prediction").textContent = `prediction: ${top}`;
  const bars = $("bars");
  bars.replaceChildren();
  p.forEach((q, d) => {
    const row = document.createElement("div");
    row.className = d === top ? "bar top" : "bar";
    row.innerHTML = `<span>${d}</span><span class="track"><div class="fill" style="width:${(100 * q).toFixed(1)}%"></div></span><span>${(100 * q).toFixed(1)} %</span>`;
    bars.appendChild(row);
  });
  $("timing").textContent = `time per inference: ${ms.toFixed(2)} ms`;
}

async function classifyPad(clf) {
  const x = mnistInput();
  showPreview(x);
  const t = performance.now();
  const y = await clf.run(x, 1);
  showResult(y, performance.now() - t);
}

function enableDrawing(clf) {
  let drawing = false;
  let busy = false, again = false;
  const classify = async () => {
    if (busy) { again = true; return; }
    busy = true;
    try {
      do { again = false; await classifyPad(clf); } while (again);
    } catch (e) {
      $("timing").textContent = String(e);
      $("timing").className = "error";
    } finally { busy = false; }
  };
  const at = (e) => {
    const r = pad.getBoundingClientRect();
    return [(e.clientX - r.left) * pad.width / r.width, (e.clientY - r.top) * pad.height / r.height];
  };
  pen.lineWidth = 20;
  pen.lineCap = "round";
  pen.lineJoin = "round";
  pen.strokeStyle = "#fff";
  pad.addEventListener("pointerdown", (e) => {
    drawing = true;
    pad.setPointerCapture(e.pointerId);
    const [x, y] = at(e);
    pen.beginPath();
    pen.moveTo(x, y);
    pen.lineTo(x, y);
    pen.stroke();
  });
  pad.addEventListener("pointermove", (e) => {
    if (!drawing) return;
    const [x, y] = at(e);
    pen.lineTo(x, y);
    pen.stroke();
  });
  const end = () => {
    if (!drawing) return;
    drawing = false;
    classify();
  };
  pad.addEventListener("pointerup", end);
  pad.addEventListener("pointercancel", end);
  $("clear").addEventListener("click", () => { clearPad(); classify(); });
}

// ---- The test set: the 1000 committed MNIST test images in one batch, checked against the
// labels and against the native CPU engine's outputs (`reference-logits.npy`, made by
// `web/build.sh`).
async function runTestSet(clf) {
  const [img, lab, ref] = await Promise.all(
    ["test-images.npy", "test-labels.npy", "reference-logits.npy"].map(fetchBytes));
  const x = npyValues(img, "test-images.npy");
  const labels = npyLabels(lab, "test-labels.npy", clf.outputSize);
  const reference = npyValues(ref, "reference-logits.npy");
  const n = labels.length, k = clf.outputSize;
  if (x.length !== n * clf.inputSize) throw new Error(`${x.length / clf.inputSize} images for ${n} labels`);
  if (reference.length !== n * k) throw new Error(`${reference.length} reference outputs for ${n}×${k}`);
  const t = performance.now();
  const y = await clf.run(x, n);
  const ms = performance.now() - t;
  let correct = 0, maxDiff = 0;
  for (let i = 0; i < n; i++) {
    if (argmax(y, i * k, k) === labels[i]) correct++;
  }
  for (let i = 0; i < n * k; i++) maxDiff = Math.max(maxDiff, Math.abs(y[i] - reference[i]));
  return {
    correct, total: n, accuracy: correct / n, ms_per_image: ms / n,
    max_abs_diff_vs_native: maxDiff,
  };
}

function showTestSet(r) {
  $("testset").textContent =
    `${r.correct} of ${r.total} correct (${(100 * r.accuracy).toFixed(1)} %), ` +
    `${(1000 / r.ms_per_image).toFixed(0)} images/s (${r.ms_per_image.toFixed(3)} ms per image), ` +
    `max |output − native CPU engine| = ${r.max_abs_diff_vs_native.toExponential(2)}`;
}

// What the browser says of its WebGPU adapter (wgpu names it by its description, which
// browsers often leave empty).
async function browserAdapterInfo() {
  try {
    const i = (await navigator.gpu?.requestAdapter())?.info;
    return i ? [i.vendor, i.architecture, i.device, i.description].filter(Boolean).join(" ") : "";
  } catch {
    return "";
  }
}

async function main() {
  await init();
  const clf = await Classifier.create(await fetchBytes(MODEL), wanted);
  const fallback = clf.fallback;
  const info = clf.backend === "webgpu" ? await browserAdapterInfo() : "";
  const adapter = info ? `${info} (WebGPU)` : clf.adapter;
  $("device").textContent =
    `backend: ${clf.backend}\nadapter: ${adapter}\nengine: ${clf.name}` +
    (fallback ? `\nWebGPU unavailable, CPU fallback: ${fallback}` : "");
  showLayers(clf);
  clearPad();
  await classifyPad(clf);
  const firstResultMs = performance.now();
  enableDrawing(clf);
  $("run-test").addEventListener("click", async () => {
    $("testset").textContent = "running…";
    try { showTestSet(await runTestSet(clf)); } catch (e) {
      $("testset").textContent = String(e);
      $("testset").className = "error";
    }
  });
  if (selfTest) {
    const r = await runTestSet(clf);
    showTestSet(r);
    window.eieSelfTest = {
      backend: clf.backend, adapter, fallback: fallback ?? null,
      ...r, load_to_first_result_ms: firstResultMs,
    };
    document.title = "eie selftest done";
  }
}

main().catch((e) => {
  const msg = e instanceof Error ? e.message : String(e);
  $("device").textContent = `error: ${msg}`;
  $("device").className = "error";
  if (selfTest) {
    window.eieSelfTest = { error: msg };
    document.title = `eie selftest failed: ${msg}`;
  }
});
