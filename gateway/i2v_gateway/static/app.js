// The page's wiring: submit, follow one job live, show its video, refresh history and cluster.
import { api, fetchBlob, getToken, isTerminal, setToken, watchJob } from "./api.js";
import * as form from "./form.js";
import { renderCluster, renderHistory } from "./views.js";

const $ = (id) => document.getElementById(id);
const REFRESH_MS = 3000;
const PARAMS_KEY = "i2v.params";
// Images of this page's jobs, for re-run; the server does not hand input images back.
const images = new Map();
let current = null;

function rememberParams(id, params) {
  const stored = JSON.parse(localStorage.getItem(PARAMS_KEY) || "{}");
  stored[id] = params;
  const ids = Object.keys(stored);
  for (const old of ids.slice(0, Math.max(0, ids.length - 50))) delete stored[old];
  localStorage.setItem(PARAMS_KEY, JSON.stringify(stored));
}

function storedParams(id) {
  return JSON.parse(localStorage.getItem(PARAMS_KEY) || "{}")[id] || null;
}

async function submit(event) {
  event.preventDefault();
  form.clearErrors();
  const params = form.readParams();
  if (!params) return;
  const image = form.currentImage();
  $("generate").disabled = true;
  try {
    const video = await api("/v1/videos", { method: "POST", body: form.toFormData(params, image) });
    images.set(video.id, image);
    rememberParams(video.id, params);
    follow(video);
    refreshHistory();
  } catch (err) {
    form.showError(err.param, err.message);
  } finally {
    $("generate").disabled = false;
  }
}

function formatSeconds(s) {
  if (!(s >= 0) || !Number.isFinite(s)) return "";
  const total = Math.round(s);
  return total >= 60 ? `${Math.floor(total / 60)} m ${total % 60} s` : `${total} s`;
}

function setText(id, value) {
  if (value !== undefined && value !== null && value !== "") $(id).textContent = String(value);
}

// The bar moves back only for a new attempt: a state event or a failed job's object says 0%.
let shown = { attempt: 0, percent: 0 };

function barPercent(data) {
  if (typeof data.progress !== "number") return undefined;
  if (data.attempt > shown.attempt) shown = { attempt: data.attempt, percent: 0 };
  shown.percent = Math.max(shown.percent, data.progress);
  return shown.percent;
}

// One event (SSE or a polled Video object) onto the job panel.
function showProgress(data) {
  if (data.status) {
    $("status").textContent = data.status;
    $("job-panel").dataset.status = data.status;
  }
  const step = data.step;
  const steps = data.total_steps;
  let percent = barPercent(data);
  if (typeof percent !== "number" && step && steps) percent = (100 * step) / steps;
  if (typeof percent === "number") $("progress").value = Math.min(100, Math.max(0, percent));
  const parts = [];
  if (typeof percent === "number") parts.push(`${Math.round(percent)}%`);
  if (step && steps) parts.push(`step ${step}/${steps}`);
  if (data.rate) parts.push(`${Number(data.rate).toFixed(2)} steps/s`);
  if (parts.length) $("progress-text").textContent = parts.join(" · ");
  const eta = data.eta_s;
  if (eta !== undefined && eta !== null) $("eta").textContent = eta > 0 ? `ETA ${formatSeconds(eta)}` : "";
  setText("stage", data.stage);
  setText("node", data.node_id);
  setText("profile", data.profile);
  setText("retries", data.retries);
  setText("failovers", data.failovers);
  if (data.status && isTerminal(data.status)) $("eta").textContent = "";
}

function resetPanel(video) {
  $("job-panel").hidden = false;
  $("job-id").textContent = video.id;
  $("progress").value = 0;
  shown = { attempt: 0, percent: 0 };
  for (const id of ["progress-text", "eta", "watch-mode"]) $(id).textContent = "";
  for (const id of ["stage", "node", "profile"]) $(id).textContent = "-";
  for (const id of ["retries", "failovers"]) $(id).textContent = "0";
  $("job-error").hidden = true;
  $("result").hidden = true;
  $("cancel").hidden = false;
  const player = $("video");
  player.pause();
  player.removeAttribute("src");
  player.load();
}

function follow(video) {
  if (current) current.watch.stop();
  resetPanel(video);
  showProgress(video);
  const job = { id: video.id, final: null };
  job.watch = watchJob(video.id, {
    onMode: (mode) => ($("watch-mode").textContent = mode),
    onEvent: (type, data) => {
      if (type === "error") return showJobError(data.message);
      showProgress(data);
      if (isTerminal(data.status)) job.final = data;
    },
  });
  current = job;
  job.watch.done.then(() => finish(job));
}

async function finish(job) {
  if (current !== job) return;
  $("watch-mode").textContent = "";
  let video;
  try {
    video = await api(`/v1/videos/${encodeURIComponent(job.id)}`);
  } catch (err) {
    return showJobError(err.message);
  }
  if (current !== job) return;
  const merged = { ...(job.final || {}), ...video };
  showProgress(merged);
  if (merged.status === "completed") $("stage").textContent = "done";
  $("cancel").hidden = true;
  refreshHistory();
  if (merged.status === "completed") await showResult(merged);
  else showJobError((merged.error && merged.error.message) || merged.status);
}

function videoError() {
  const error = $("video").error;
  return error ? error.message || `media error ${error.code}` : "unknown error";
}

function showJobError(message) {
  $("job-error").textContent = message;
  $("job-error").hidden = false;
}

function listText(value) {
  if (value === undefined || value === null) return "-";
  if (!Array.isArray(value)) return String(value);
  if (!value.length) return "none";
  return value.map((d) => (typeof d === "object" ? d.message || d.reason || JSON.stringify(d) : d)).join("; ");
}

async function showResult(video) {
  const path = `/v1/videos/${encodeURIComponent(video.id)}/content`;
  // Without a token the browser streams with Range requests; with one, a header is needed.
  const src = getToken() ? URL.createObjectURL(await fetchBlob(path)) : path;
  const player = $("video");
  player.src = src;
  player.play().catch(() => {});
  const link = $("download");
  link.href = src;
  link.download = `${video.id}.mp4`;
  $("result-seed").textContent = video.seed ?? "-";
  $("result-profile").textContent = video.profile ?? "-";
  $("result-degradations").textContent = listText(video.degradations);
  $("result").hidden = false;
}

async function cancel(id) {
  try {
    await api(`/v1/videos/${encodeURIComponent(id)}`, { method: "DELETE" });
  } catch (err) {
    if (current && current.id === id) showJobError(err.message);
    else showListError("history-error", err);
  }
  refreshHistory();
}

function paramsFromVideo(video) {
  const params = { ...video };
  const match = /^(\d+)x(\d+)$/.exec(video.size || "");
  if (match) [params.width, params.height] = [Number(match[1]), Number(match[2])];
  return params;
}

function rerun(video) {
  form.clearErrors();
  form.writeParams(storedParams(video.id) || paramsFromVideo(video));
  const image = images.get(video.id) || form.currentImage();
  if (!image) {
    form.showError("input_reference", "pick the input image again to re-run this job");
    return;
  }
  form.setImage(image);
  $("gen-form").requestSubmit();
}

function showListError(id, err) {
  $(id).textContent = err ? err.message : "";
  $(id).hidden = !err;
}

async function refreshHistory() {
  try {
    const page = await api("/v1/videos?limit=20");
    renderHistory(page.data || [], {
      show: (video) => follow(video),
      cancel: (video) => cancel(video.id),
      rerun,
    });
    showListError("history-error", null);
  } catch (err) {
    showListError("history-error", err);
  }
}

async function refreshCluster() {
  try {
    renderCluster(await api("/v1/cluster"));
    showListError("cluster-error", null);
  } catch (err) {
    showListError("cluster-error", err);
  }
}

async function loadLimits() {
  try {
    form.applyLimits(await api("/v1/limits"));
    form.clearError("form");
  } catch (err) {
    form.applyLimits({});
    form.showError(null, `could not read the server's limits: ${err.message}`);
  }
}

function init() {
  $("token").value = getToken();
  const applyToken = () => {
    setToken($("token").value.trim());
    loadLimits();
    refreshHistory();
    refreshCluster();
  };
  $("token").addEventListener("change", applyToken);
  $("token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    applyToken();
  });
  $("video").addEventListener("error", () => {
    if ($("video").getAttribute("src")) showJobError(`the video did not load (${videoError()})`);
  });
  form.bindImageInput();
  $("gen-form").addEventListener("submit", submit);
  $("cancel").addEventListener("click", () => current && cancel(current.id));
  loadLimits();
  refreshHistory();
  refreshCluster();
  setInterval(() => {
    if (document.hidden) return;
    refreshHistory();
    refreshCluster();
  }, REFRESH_MS);
}

init();
