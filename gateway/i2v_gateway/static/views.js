// The job history and the cluster view: tables built from the gateway's JSON, text only.
const $ = (id) => document.getElementById(id);

function cell(row, content) {
  const td = document.createElement("td");
  if (content instanceof Node) td.append(content);
  else td.textContent = content === undefined || content === null || content === "" ? "-" : String(content);
  row.append(td);
  return td;
}

function button(label, id, onClick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.id = id;
  b.addEventListener("click", onClick);
  return b;
}

export function shortId(id) {
  return id.length > 14 ? id.slice(0, 14) + "…" : id;
}

export function formatTime(unixSeconds) {
  if (!unixSeconds) return "-";
  const date = new Date(unixSeconds * 1000);
  const today = new Date().toDateString() === date.toDateString();
  return today ? date.toLocaleTimeString() : date.toLocaleString();
}

export function stateText(video) {
  if (video.status === "in_progress" && typeof video.progress === "number") {
    return `in_progress ${Math.round(video.progress)}%`;
  }
  if (video.status === "failed" && video.error && video.error.code) return `failed (${video.error.code})`;
  return video.status;
}

function newHistoryRow(video) {
  const row = document.createElement("tr");
  row.id = "history-" + video.id;
  const code = document.createElement("code");
  code.textContent = shortId(video.id);
  code.title = video.id;
  cell(row, code);
  for (let i = 0; i < 4; i += 1) cell(row, "");
  return row;
}

function setCell(td, value) {
  const shown = value === undefined || value === null || value === "" ? "-" : String(value);
  if (td.textContent !== shown) td.textContent = shown;
}

function updateHistoryRow(row, video, actions) {
  row.video = video;
  row.dataset.status = video.status;
  const [, state, size, created, tools] = row.cells;
  setCell(state, stateText(video));
  state.className = "state-" + video.status;
  setCell(size, video.size);
  setCell(created, formatTime(video.created_at));
  const wanted = [];
  if (video.status === "completed") wanted.push(["Show", "show", actions.show]);
  if (video.status === "queued" || video.status === "in_progress") wanted.push(["Cancel", "cancel", actions.cancel]);
  wanted.push(["Re-run", "rerun", actions.rerun]);
  const names = wanted.map(([, name]) => name).join(" ");
  if (tools.dataset.actions === names) return;
  tools.dataset.actions = names;
  tools.replaceChildren(
    ...wanted.map(([label, name, act]) => button(label, `${name}-${video.id}`, () => act(row.video))),
  );
}

// actions: {show(video), cancel(video), rerun(video)}. Rows and their buttons are updated in
// place, so a refresh never swaps a button from under a click.
export function renderHistory(videos, actions) {
  const body = $("history").tBodies[0];
  const existing = new Map([...body.rows].map((row) => [row.id, row]));
  videos.forEach((video, index) => {
    const row = existing.get("history-" + video.id) || newHistoryRow(video);
    existing.delete(row.id);
    updateHistoryRow(row, video, actions);
    if (body.rows[index] !== row) body.insertBefore(row, body.rows[index] || null);
  });
  for (const gone of existing.values()) gone.remove();
}

export function formatBytes(bytes) {
  if (bytes === undefined || bytes === null || bytes === "") return "-";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = Number(bytes);
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}

function tierText(tier) {
  return String(tier ?? "-").replace(/^TIER_/, "");
}

function leaderText(cluster) {
  const leader = cluster.leader || {};
  return [leader.id, leader.addr].filter(Boolean).join(" @ ") || "none";
}

function healthText(node) {
  if (node.set_aside) return "set aside" + (node.health_reason ? `: ${node.health_reason}` : "");
  if (node.cooldown_s > 0) return `cooling ${node.cooldown_s} s` + (node.health_reason ? `: ${node.health_reason}` : "");
  return "ok";
}

let shownNodes = "";

export function renderCluster(cluster) {
  $("cluster-leader").textContent = leaderText(cluster);
  $("cluster-coordinators").textContent = String((cluster.coordinators || []).length || "-");
  const queue = cluster.queue || {};
  $("cluster-queue").textContent = String(queue.queued ?? "-");
  $("cluster-running").textContent = String(queue.running ?? "-");
  const nodes = cluster.nodes || [];
  const signature = JSON.stringify(nodes);
  if (signature === shownNodes) return;
  shownNodes = signature;
  const rows = nodes.map((node) => {
    const row = document.createElement("tr");
    const id = node.id;
    row.id = "node-" + id;
    cell(row, [id, node.gpu].filter(Boolean).join(" · "));
    cell(row, tierText(node.tier));
    cell(row, formatBytes(node.free_bytes));
    cell(row, node.job_id || (node.busy ? "busy" : "idle"));
    cell(row, healthText(node));
    return row;
  });
  $("cluster-nodes").tBodies[0].replaceChildren(...rows);
}
