// zeroclip web page: pick an image, name labels, post a multipart form to /v1/classify and draw
// the sorted probabilities. No dependencies, so the page works offline.
"use strict";

const $ = (id) => document.getElementById(id);
let image = null; // the File or Blob to classify
let adapter = null; // the server's few-shot adapter (from /readyz), if it has one

function setImage(blob) {
  if (!blob || !blob.type.startsWith("image/")) {
    showError("That is not an image file.");
    return;
  }
  image = blob;
  const preview = $("preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(blob);
  preview.hidden = false;
  $("drop-hint").hidden = true;
  $("classify").disabled = false;
  classify();
}

function showError(message) {
  $("status").textContent = message;
  $("status").className = "error";
}

function parseLabels(text) {
  const parts = text.trim().includes("\n") ? text.split("\n") : text.split(",");
  return parts.map((s) => s.trim()).filter((s) => s.length > 0);
}

function drawBars(predictions) {
  const bars = $("bars");
  bars.replaceChildren();
  for (const p of predictions) {
    const row = document.createElement("div");
    row.className = "bar-row";
    row.dataset.label = p.label;
    row.dataset.score = String(p.score);
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = p.label;
    label.title = p.label;
    const bar = document.createElement("div");
    bar.className = "bar";
    const fill = document.createElement("div");
    fill.className = "fill";
    fill.style.width = (100 * p.score).toFixed(2) + "%";
    bar.appendChild(fill);
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = (100 * p.score).toFixed(1) + "%";
    row.append(label, bar, score);
    bars.appendChild(row);
  }
}

async function classify() {
  if (!image) return;
  const labels = parseLabels($("labels").value);
  if (labels.length === 0) {
    showError("Type at least one label.");
    return;
  }
  const form = new FormData();
  form.append("image", image, image.name || "pasted-image");
  // With an adapter the server classifies against the adapter's labels and templates.
  if (!adapter) {
    form.append("labels", labels.join("\n"));
    const choice = $("template").value;
    if (choice.startsWith("preset:")) {
      form.append("templates", choice.slice("preset:".length));
    } else if (choice === "custom") {
      form.append("template", $("custom-template").value || "{}");
    } else {
      form.append("template", choice);
    }
  }
  $("classify").disabled = true;
  $("status").className = "";
  $("status").textContent = "Classifying…";
  const started = performance.now();
  try {
    const response = await fetch("/v1/classify", { method: "POST", body: form });
    const body = await response.json();
    const elapsed = performance.now() - started;
    if (!response.ok) {
      showError(body.error || ("HTTP " + response.status));
      return;
    }
    const result = body.results[0];
    if (result.error) {
      showError(result.error);
      return;
    }
    $("status").textContent = "";
    drawBars(result.predictions);
    $("latency").textContent =
      "latency " + elapsed.toFixed(0) + " ms (server " + body.elapsed_ms.toFixed(1) + " ms, " +
      body.templates + (body.templates === 1 ? " template)" : " templates)");
  } catch (e) {
    showError("Request failed: " + e);
  } finally {
    $("classify").disabled = false;
  }
}

$("file").addEventListener("change", (e) => {
  if (e.target.files.length > 0) setImage(e.target.files[0]);
});
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  if (e.dataTransfer.files.length > 0) setImage(e.dataTransfer.files[0]);
});
document.addEventListener("paste", (e) => {
  for (const item of e.clipboardData.items) {
    if (item.type.startsWith("image/")) {
      setImage(item.getAsFile());
      return;
    }
  }
});
$("template").addEventListener("change", () => {
  $("custom-template").hidden = $("template").value !== "custom";
});
$("classify").addEventListener("click", classify);

// The model's name and the adapter, if any, from /readyz; while it answers 503 (the model or
// the adapter's classes are still loading) ask again each second.
function loadInfo() {
  fetch("/readyz").then((r) => {
    if (r.status === 503) {
      setTimeout(loadInfo, 1000);
      return null;
    }
    return r.json();
  }).then((b) => {
    if (!b) return;
    let text = b.model ? "Model: " + b.model + "." : "";
    if (b.adapter) {
      adapter = b.adapter;
      text += " Few-shot adapter: " + b.adapter.method + " over " + b.adapter.labels.length +
        " classes (template " + b.adapter.templates.join(", ") + ").";
      $("labels").value = b.adapter.labels.join("\n");
      $("labels").readOnly = true;
      $("template").hidden = true;
      $("template-label").hidden = true;
    }
    $("model").textContent = text;
  }).catch(() => {});
}
loadInfo();
