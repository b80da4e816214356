// paumer-edge live view: stats from /events, pictures from /stream.mjpg, knobs through POST /knobs.
"use strict";

const $ = (id) => document.getElementById(id);
const HISTORY = 300; // frames in the rolling plot
// The page's state, also readable from the console (and by the browser test).
const view = (window.paumerView = { info: null, knobs: null, records: [], fps: 0, lastChange: null, ended: false });

function setStatus(text, kind) {
  const s = $("status");
  s.textContent = text;
  s.className = "status " + (kind || "");
}

function showError(message) {
  $("error").textContent = message || "";
}

function fmt(x, digits) {
  return x === null || x === undefined ? "off" : Number(x).toFixed(digits);
}

// ---- knobs -----------------------------------------------------------------------------------
function showKnobs(knobs, force) {
  view.knobs = knobs;
  const slider = $("budget");
  if (force || (!slider.matches(":active") && document.activeElement !== slider)) {
    slider.value = knobs.budget;
    $("budget-value").textContent = Number(knobs.budget).toFixed(2);
  }
  slider.disabled = !view.info || !view.info.control || knobs.target_ms !== null;
  slider.title = knobs.target_ms !== null ? "the latency target sets the budget: clear it to set the budget by hand" : "";
  for (const [id, value] of [["threshold", knobs.threshold], ["target", knobs.target_ms]]) {
    if (force || document.activeElement !== $(id)) $(id).value = value === null ? "" : value;
  }
  $("pause-map").checked = knobs.pause_map;
}

async function change(knobs) {
  try {
    const r = await fetch("/knobs", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(knobs),
      credentials: "same-origin",
    });
    const body = await r.json().catch(() => ({ error: `the view answered HTTP ${r.status}` }));
    if (!r.ok) throw new Error(body.error || `the view answered HTTP ${r.status}`);
    showError("");
    view.lastChange = { sent: knobs, frames_before: body.frames_before, at: performance.now() };
    showKnobs(body.knobs, true);
  } catch (e) {
    showError(e.message);
    if (view.knobs) showKnobs(view.knobs, true); // back to what is really set
  }
}

function fieldValue(id) {
  const text = $(id).value.trim();
  return text === "" ? null : text; // sent as typed: the pipeline's own check says what is wrong with it
}

$("budget").addEventListener("input", (e) => { $("budget-value").textContent = Number(e.target.value).toFixed(2); });
$("budget").addEventListener("change", (e) => change({ budget: Number(e.target.value) }));
$("threshold-form").addEventListener("submit", (e) => { e.preventDefault(); change({ threshold: fieldValue("threshold") }); });
$("target-form").addEventListener("submit", (e) => { e.preventDefault(); change({ target_ms: fieldValue("target") }); });
$("pause-map").addEventListener("change", (e) => change({ pause_map: e.target.checked }));

function setControl(info) {
  const on = info.control;
  for (const el of document.querySelectorAll("#controls input, #controls button")) el.disabled = !on;
  $("readonly").hidden = on;
  $("readonly").textContent = info.readonly_reason || "";
}

// ---- stats -----------------------------------------------------------------------------------
function legend(info) {
  const box = $("legend");
  box.replaceChildren();
  const add = (color, text) => {
    const item = document.createElement("span");
    const sw = document.createElement("span");
    sw.className = "swatch";
    sw.style.background = `rgb(${color.join(",")})`;
    item.append(sw, text);
    box.append(item);
  };
  info.classes.forEach((name, i) => add(info.palette[i] || [0, 0, 0], name));
  (info.stage_colors || []).forEach((c, k) => add(c, `paused after stage ${k}` + (k === info.stages - 1 ? " (ran every block)" : "")));
}

function showRecord(r) {
  $("latency").textContent = `${r.ms.toFixed(1)} ms`;
  $("applied").textContent = r.budget.toFixed(2) + (r.threshold !== null ? `, threshold ${r.threshold.toFixed(2)}` : "");
  $("compute").textContent = `${(100 * r.compute).toFixed(1)}%`;
  $("frame").textContent = r.frame;
  const body = $("stages").tBodies[0];
  const rows = r.stage_ms.map((ms, k) => [`stage ${k}`, ms.toFixed(2), `${r.counts[k]} / ${view.info.patches}`]);
  rows.push(["decoder", r.decoder_ms.toFixed(2), ""], ["policy", r.policy_ms.toFixed(2), ""]);
  body.replaceChildren(...rows.map((cells) => {
    const tr = document.createElement("tr");
    for (const c of cells) {
      const td = document.createElement("td");
      td.textContent = c;
      tr.append(td);
    }
    return tr;
  }));
}

function plot() {
  const c = $("plot");
  const g = c.getContext("2d");
  const rec = view.records;
  g.clearRect(0, 0, c.width, c.height);
  if (rec.length < 2) return;
  const pad = 4, w = c.width - 2 * pad, h = c.height - 2 * pad;
  // the scale follows the bulk of the frames, not one slow first frame (outliers are drawn at the top)
  const sorted = rec.map((r) => r.ms).sort((a, b) => a - b);
  const top = sorted[Math.floor(0.95 * (sorted.length - 1))] * 1.3 || 1;
  const x = (i) => pad + (w * i) / (HISTORY - 1);
  const line = (color, y) => {
    g.strokeStyle = color;
    g.lineWidth = 1.5;
    g.beginPath();
    rec.forEach((r, i) => (i ? g.lineTo(x(i), y(r)) : g.moveTo(x(i), y(r))));
    g.stroke();
  };
  line("#6ec1ff", (r) => pad + h * (1 - Math.min(r.ms / top, 1)));
  line("#f4a259", (r) => pad + h * (1 - r.budget));
  g.fillStyle = "#9aa0a6";
  g.font = "11px system-ui, sans-serif";
  g.fillText(`${top.toFixed(0)} ms`, pad + 2, pad + 10);
  g.fillText("budget 1", c.width - 52, pad + 10);
}

function onStats(data) {
  if (data.records.length) {
    view.records.push(...data.records);
    if (view.records.length > HISTORY) view.records.splice(0, view.records.length - HISTORY);
    showRecord(view.records[view.records.length - 1]);
  }
  view.fps = data.fps;
  $("fps").textContent = data.fps.toFixed(1);
  $("viewers").textContent = data.viewers;
  showKnobs(data.knobs, false);
  plot();
}

function connect() {
  const events = new EventSource("/events");
  events.addEventListener("hello", (e) => {
    const info = (view.info = JSON.parse(e.data));
    $("model").textContent = `${info.model} · ${info.backend}`;
    setControl(info);
    legend(info);
    view.records = info.records.slice(-HISTORY);
    showKnobs(info.knobs, true);
    setStatus("live", "live");
    if (view.records.length) showRecord(view.records[view.records.length - 1]);
    plot();
  });
  events.addEventListener("stats", (e) => onStats(JSON.parse(e.data)));
  events.addEventListener("end", () => {
    view.ended = true;
    setStatus("the run has ended", "down");
    events.close();
  });
  events.onerror = () => { if (!view.ended) setStatus("reconnecting…", "down"); };
}

// A dropped picture stream comes back by itself (the run may have paused, or the network hiccuped).
$("stream").addEventListener("error", () => {
  if (!view.ended) setTimeout(() => { $("stream").src = `/stream.mjpg?retry=${Date.now()}`; }, 1000);
});

connect();
