// The Shop observer: every service's supervision tree, refreshed every second from
// /admin/services/<service>/tree (through nginx, with the admin's token), and a stop action
// that lets an operator watch a supervisor bring an actor back.
"use strict";

const SERVICES = ["user", "product", "cart", "order", "payment", "notification"];
const REFRESH_MS = 1000;
const state = {
  token: sessionStorage.getItem("shop-admin-token"),
  restarts: new Map(), // "service/name" -> restart count last shown
  closed: new Set(),   // "service/name" of collapsed nodes
  selected: null,      // { service, node }
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

$("stop").addEventListener("click", async () => {
  const { service, node } = state.selected || {};
  if (!node) return;
  const response = await fetch(
    `/admin/services/${service}/actors/${encodeURIComponent(node.name)}/stop`,
    { method: "POST", headers: { authorization: `Bearer ${state.token}` } },
  );
  const body = await response.json().catch(() => ({}));
  $("stop-result").textContent = response.ok
    ? `stopped; watch ${node.name}'s restarts`
    : body.detail || `refused (${response.status})`;
});

function start() {
  $("login").hidden = true;
  $("trees").hidden = false;
  $("logout").hidden = false;
  for (const service of SERVICES) {
    const section = document.createElement("section");
    section.className = "service";
    section.id = `service-${service}`;
    section.innerHTML = `<h2>${service}</h2><div class="tree"></div>`;
    $("trees").appendChild(section);
  }
  refresh();
  setInterval(refresh, REFRESH_MS);
}

async function refresh() {
  await Promise.all(SERVICES.map(async (service) => {
    const section = $(`service-${service}`);
    try {
      const response = await fetch(`/admin/services/${service}/tree?sample=20`, {
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
      holder.replaceChildren(render(service, tree, true));
    } catch (error) {
      section.classList.add("down");
    }
  }));
  $("status").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

function line(service, node) {
  const key = `${service}/${node.name || node.id}`;
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
    (node.restart ? ` policy=${escape(node.restart)}` : "") + figures;
  if (state.selected && state.selected.service === service && state.selected.node.name === node.name) {
    span.classList.add("selected");
    state.selected.node = node;
    showDetails(service, node, false);
  }
  span.addEventListener("click", (event) => {
    event.preventDefault();
    state.selected = { service, node };
    showDetails(service, node, true);
  });
  return span;
}

function render(service, node, root) {
  const key = `${service}/${node.name || node.id}`;
  node.root = root;
  if (!node.children || node.children.length === 0) {
    const leaf = document.createElement("div");
    leaf.className = "leaf";
    leaf.appendChild(line(service, node));
    return leaf;
  }
  const details = document.createElement("details");
  details.open = !state.closed.has(key);
  details.addEventListener("toggle", () => {
    if (details.open) state.closed.delete(key); else state.closed.add(key);
  });
  const summary = document.createElement("summary");
  summary.appendChild(line(service, node));
  details.appendChild(summary);
  for (const child of node.children) details.appendChild(render(service, child, false));
  if (node.children_total && node.children_total > node.children.length) {
    const more = document.createElement("div");
    more.className = "more";
    more.textContent = `… ${node.children_total - node.children.length} more (${node.children_total} in all)`;
    details.appendChild(more);
  }
  return details;
}

function showDetails(service, node, fresh) {
  $("details").hidden = false;
  $("details-name").textContent = `${service}: ${node.name || node.id}`;
  const fields = {
    kind: node.kind, status: node.status, restart: node.restart || "-", restarts: node.restarts,
    "last failure": node.last_failure || "-",
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
