// The Shop observer: the supervision tree of every replica of every service, refreshed every
// second from /admin/services/<service>/replicas/<n>/tree (through nginx, with the admin's
// token), and a stop action that lets an operator watch a supervisor bring an actor back.
"use strict";

const SERVICES = ["user", "product", "cart", "order", "payment", "notification"];
const REFRESH_MS = 1000;
const state = {
  token: sessionStorage.getItem("shop-admin-token"),
  panes: [],           // { service, replica, label }: one per replica, from /admin/replicas
  restarts: new Map(), // "label/name" -> restart count last shown
  closed: new Set(),   // "label/name" of collapsed nodes
  selected: null,      // { pane, node }
};

const $ = (id) => document.getElementById(id);

$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  $("login-error").textContent = "";
  const response = await fetch("/users/login", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ email: form.get("email"), password: form.get("password") }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    $("login-error").textContent = body.detail || `sign-in failed (${response.status})`;
    return;
  }
  state.token = body.access_token;
  sessionStorage.setItem("shop-admin-token", state.token);
  start();
});

$("logout").addEventListener("click", () => {
  sessionStorage.removeItem("shop-admin-token");
  location.reload();
});

const base = (pane) => `/admin/services/${pane.service}/replicas/${pane.replica}`;

$("stop").addEventListener("click", async () => {
  const { pane, node } = state.selected || {};
  if (!node) return;
  const response = await fetch(
    `${base(pane)}/actors/${encodeURIComponent(node.name)}/stop`,
    { method: "POST", headers: { authorization: `Bearer ${state.token}` } },
  );
  const body = await response.json().catch(() => ({}));
  $("stop-result").textContent = response.ok
    ? `stopped; watch ${node.name}'s restarts`
    : body.detail || `refused (${response.status})`;
});

async function start() {
  $("login").hidden = true;
  $("trees").hidden = false;
  $("logout").hidden = false;
  const counts = await fetch("/admin/replicas").then((r) => r.json()).catch(() => ({}));
  for (const service of SERVICES) {
    for (let replica = 1; replica <= (counts[service] || 1); replica++) {
      const label = replica === 1 ? service : `${service}-${replica}`;
      const pane = { service, replica, label };
      state.panes.push(pane);
      const section = document.createElement("section");
      section.className = "service";
      section.id = `service-${label}`;
      section.dataset.service = service;
      section.innerHTML = `<h2>${escape(label)}</h2><div class="tree"></div>`;
      $("trees").appendChild(section);
    }
  }
  refresh();
  setInterval(refresh, REFRESH_MS);
}

async function refresh() {
  await Promise.all(state.panes.map(async (pane) => {
    const section = $(`service-${pane.label}`);
    try {
      const response = await fetch(`${base(pane)}/tree?sample=20`, {
        headers: { authorization: `Bearer ${state.token}` },
      });
      if (response.status === 401) {
        sessionStorage.removeItem("shop-admin-token");
        location.reload();
        return;
      }
      if (!response.ok) throw new Error(`${response.status}`);
      const tree = await response.json();
      section.classList.remove("down");
      const holder = section.querySelector(".tree");
      holder.replaceChildren(render(pane, tree, true));
    } catch (error) {
      section.classList.add("down");
    }
  }));
  $("status").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

function line(pane, node) {
  const key = `${pane.label}/${node.name || node.id}`;
  const before = state.restarts.get(key);
  state.restarts.set(key, node.restarts);
  const moved = before !== undefined && node.restarts > before;
  const restartClass = moved ? "moved" : node.restarts > 0 ? "some" : "";
  const span = document.createElement("span");
  span.className = "actor";
  span.dataset.name = node.name || "";
  span.dataset.restarts = node.restarts;
  const figures = node.mean_handling_ms !== undefined
    ? ` msgs=${node.messages} avg=${node.mean_handling_ms.toFixed(2)}ms` : "";
  span.innerHTML =
    `${escape(node.name || "-")} <span class="kind">[${escape(node.kind)}]</span> ` +
    `<span class="${escape(node.status)}">${escape(node.status)}</span> ` +
    `<span class="restarts ${restartClass}">restarts=${node.restarts}</span>` +
    (node.restart ? ` policy=${escape(node.restart)}` : "") + figures +
    (node.detail ? ` <span class="detail">${escape(node.detail)}</span>` : "");
  if (state.selected && state.selected.pane === pane && state.selected.node.name === node.name) {
    span.classList.add("selected");
    state.selected.node = node;
    showDetails(pane, node, false);
  }
  span.addEventListener("click", (event) => {
    event.preventDefault();
    state.selected = { pane, node };
    showDetails(pane, node, true);
  });
  return span;
}

function render(pane, node, root) {
  const key = `${pane.label}/${node.name || node.id}`;
  node.root = root;
  if (!node.children || node.children.length === 0) {
    const leaf = document.createElement("div");
    leaf.className = "leaf";
    leaf.appendChild(line(pane, node));
    return leaf;
  }
  const details = document.createElement("details");
  details.open = !state.closed.has(key);
  details.addEventListener("toggle", () => {
    if (details.open) state.closed.delete(key); else state.closed.add(key);
  });
  const summary = document.createElement("summary");
  summary.appendChild(line(pane, node));
  details.appendChild(summary);
  for (const child of node.children) details.appendChild(render(pane, child, false));
  if (node.children_total && node.children_total > node.children.length) {
    const more = document.createElement("div");
    more.className = "more";
    more.textContent = `… ${node.children_total - node.children.length} more (${node.children_total} in all)`;
    details.appendChild(more);
  }
  return details;
}

function showDetails(pane, node, fresh) {
  $("details").hidden = false;
  $("details-name").textContent = `${pane.label}: ${node.name || node.id}`;
  const fields = {
    kind: node.kind, status: node.status, restart: node.restart || "-", restarts: node.restarts,
    "last failure": node.last_failure || "-",
    state: node.detail || "-",
    started: node.started_at || "-", messages: node.messages,
    "mean handling": node.mean_handling_ms !== undefined ? `${node.mean_handling_ms.toFixed(2)} ms` : "-",
    children: node.children_total || (node.children || []).length, id: node.id,
  };
  $("details-fields").replaceChildren(...Object.entries(fields).flatMap(([name, value]) => {
    const dt = document.createElement("dt"); dt.textContent = name;
    const dd = document.createElement("dd"); dd.textContent = value;
    dd.dataset.field = name;
    return [dt, dd];
  }));
  $("stop").disabled = node.root || !node.name;
  if (fresh) $("stop-result").textContent = "";
}

function escape(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

if (state.token) start();
