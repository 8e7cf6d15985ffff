// The upload page: sends the chosen image to /predict on this server and shows the top 5 as bars.
"use strict";

const $ = (id) => document.getElementById(id);

function setStatus(text, isError) {
  $("status").textContent = text;
  $("status").className = isError ? "error" : "";
}

function showBars(predictions) {
  const bars = $("bars");
  bars.replaceChildren();
  for (const p of predictions) {
    const li = document.createElement("li");
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = p.label;
    label.title = p.label;
    const track = document.createElement("span");
    track.className = "track";
    const bar = document.createElement("span");
    bar.className = "bar";
    bar.style.display = "block";
    const prob = p.prob === null ? 0 : p.prob;
    bar.style.width = (100 * prob).toFixed(1) + "%";
    track.append(bar);
    const pct = document.createElement("span");
    pct.className = "pct";
    pct.textContent = p.prob === null ? "n/a" : (100 * prob).toFixed(2) + "%";
    li.append(label, track, pct);
    bars.append(li);
  }
  $("top1").textContent = predictions.length ? predictions[0].label : "";
}

async function classify(file) {
  if (!file) return;
  const preview = $("preview");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(file);  // a blob: URL, local to the page
  setStatus("Classifying " + file.name + "...", false);
  document.body.dataset.state = "busy";
  const form = new FormData();
  form.append("file", file, file.name);
  try {
    const response = await fetch("/predict?k=5", { method: "POST", body: form });
    const body = await response.json();
    if (!response.ok) throw new Error(body.detail || response.statusText);
    showBars(body.predictions);
    $("result").hidden = false;
    setStatus(file.name + ": " + body.model, false);
    document.body.dataset.state = "done";
  } catch (err) {
    $("result").hidden = true;
    setStatus(String(err.message || err), true);
    document.body.dataset.state = "error";
  }
}

async function showModel() {
  try {
    const health = await (await fetch("/health")).json();
    $("model").textContent = health.model + " (" + health.run + ", " + health.classes + " classes)";
  } catch (err) {
    setStatus("the server does not answer: " + err, true);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("file").addEventListener("change", (e) => classify(e.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    classify(e.dataTransfer.files[0]);
  });
  showModel();
});
