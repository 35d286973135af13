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

// actions: {show(video), cancel(video), rerun(video)}
export function renderHistory(videos, actions) {
  const body = $("history").tBodies[0];
  const rows = [];
  for (const video of videos) {
    const row = document.createElement("tr");
    row.id = "history-" + video.id;
    row.dataset.status = video.status;
    const code = document.createElement("code");
    code.textContent = shortId(video.id);
    code.title = video.id;
    cell(row, code);
    cell(row, stateText(video)).className = "state-" + video.status;
    cell(row, video.size);
    cell(row, formatTime(video.created_at));
    const tools = cell(row, "");
    tools.textContent = "";
    if (video.status === "completed") tools.append(button("Show", "show-" + video.id, () => actions.show(video)));
    if (video.status === "queued" || video.status === "in_progress") {
      tools.append(button("Cancel", "cancel-" + video.id, () => actions.cancel(video)));
    }
    tools.append(button("Re-run", "rerun-" + video.id, () => actions.rerun(video)));
    rows.push(row);
  }
  body.replaceChildren(...rows);
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

export function renderCluster(cluster) {
  $("cluster-leader").textContent = leaderText(cluster);
  $("cluster-coordinators").textContent = String((cluster.coordinators || []).length || "-");
  const queue = cluster.queue || {};
  $("cluster-queue").textContent = String(queue.queued ?? "-");
  $("cluster-running").textContent = String(queue.running ?? "-");
  const rows = (cluster.nodes || []).map((node) => {
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
