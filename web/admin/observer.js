// The Shop observer: the supervision tree of every replica of every service, refreshed every
// second from /admin/services/<service>/replicas/<n>/tree (through nginx, with the admin's
// token), and a stop action that lets an operator watch a supervisor bring an actor back.
// A second tab draws one request's trace (/admin/traces/…) as a waterfall.
// Plain JS, no build step, nothing from the network but the gateway: the page works offline.
"use strict";

const SERVICES = ["user", "product", "cart", "order", "payment", "notification"];
const REFRESH_MS = 1000;
// A node with more children than this is drawn in the graph as one group box (thousands of
// carts must not explode the picture); the list still shows the sample the service sent.
const GRAPH_MAX_CHILDREN = 12;
const state = {
  token: sessionStorage.getItem("shop-admin-token"),
  panes: [],           // { service, replica, label, tree }: one per replica, from /admin/replicas
  restarts: new Map(), // "label/name" -> restart count last shown
  closed: new Set(),   // "label/name" of collapsed nodes
  selected: null,      // { pane, node }
  mode: localStorage.getItem("shop-observer-mode") === "graph" ? "graph" : "list",
  tab: "trees",
  started: false,
  traceSeq: 0,         // the latest trace request; older answers are dropped
  trace: null,         // { data, rows: [{ span, depth }], t0, total }
  recentLoaded: false,
};

const $ = (id) => document.getElementById(id);
const auth = () => ({ authorization: `Bearer ${state.token}` });

// ---------------------------------------------------------------------------------------------
// Sign-in, tabs, the URL

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

function signOut() {
  sessionStorage.removeItem("shop-admin-token");
  location.reload(); // keeps the #hash, so a #trace= link opens after signing in again
}
$("logout").addEventListener("click", signOut);

for (const button of document.querySelectorAll("#tabs [data-tab]")) {
  button.addEventListener("click", () => {
    showTab(button.dataset.tab);
    // Remember the tab in the URL (without a history entry), so a reload stays there.
    const hash = button.dataset.tab === "traces"
      ? (state.trace ? `#trace=${encodeURIComponent(state.trace.data.trace_id)}` : "#traces")
      : "";
    history.replaceState(null, "", location.pathname + location.search + hash);
  });
}

function showTab(tab) {
  state.tab = tab;
  $("trees-view").hidden = tab !== "trees";
  $("traces-view").hidden = tab !== "traces";
  for (const button of document.querySelectorAll("#tabs [data-tab]")) {
    button.setAttribute("aria-selected", String(button.dataset.tab === tab));
  }
  if (tab === "trees") refresh();
  if (tab === "traces" && !state.recentLoaded) loadRecent();
}

// `#trace=<order uuid | request id | trace id>` opens that trace; `#traces` the empty tab.
function followHash() {
  let hash = location.hash.slice(1);
  try { hash = decodeURIComponent(hash); } catch { /* a stray %: take the hash as it is */ }
  if (hash.startsWith("trace=")) {
    const query = hash.slice("trace=".length).trim();
    showTab("traces");
    $("trace-query").value = query;
    if (query) loadTrace(query);
  } else if (hash === "traces") {
    showTab("traces");
  } else {
    showTab("trees");
  }
}
window.addEventListener("hashchange", () => { if (state.started) followHash(); });

async function start() {
  state.started = true;
  $("login").hidden = true;
  $("tabs").hidden = false;
  $("logout").hidden = false;
  setMode(state.mode);
  const counts = await fetch("/admin/replicas").then((r) => r.json()).catch(() => ({}));
  for (const service of SERVICES) {
    for (let replica = 1; replica <= (counts[service] || 1); replica++) {
      const label = replica === 1 ? service : `${service}-${replica}`;
      const pane = { service, replica, label, tree: null };
      state.panes.push(pane);
      const section = document.createElement("section");
      section.className = "service";
      section.id = `service-${label}`;
      section.dataset.service = service;
      section.innerHTML =
        `<h2><span class="label">${escape(label)}</span> <span class="totals"></span></h2>` +
        `<div class="counts"></div><div class="tree"></div><div class="graph"></div>`;
      $("trees").appendChild(section);
    }
  }
  followHash();
  setInterval(() => { if (state.tab === "trees") refresh(); }, REFRESH_MS);
}

// ---------------------------------------------------------------------------------------------
// Trees

const base = (pane) => `/admin/services/${pane.service}/replicas/${pane.replica}`;
const keyOf = (pane, node) => `${pane.label}/${node.name || node.id}`;

for (const button of document.querySelectorAll("#tree-mode [data-mode]")) {
  button.addEventListener("click", () => setMode(button.dataset.mode));
}

function setMode(mode) {
  state.mode = mode;
  localStorage.setItem("shop-observer-mode", mode);
  $("trees").className = `mode-${mode}`;
  for (const button of document.querySelectorAll("#tree-mode [data-mode]")) {
    button.setAttribute("aria-pressed", String(button.dataset.mode === mode));
  }
  // Draw the other picture from the last snapshot now rather than at the next refresh.
  for (const pane of state.panes) if (pane.tree) draw(pane);
}

$("stop").addEventListener("click", async () => {
  const { pane, node } = state.selected || {};
  if (!node) return;
  const response = await fetch(
    `${base(pane)}/actors/${encodeURIComponent(node.name)}/stop`,
    { method: "POST", headers: auth() },
  );
  const body = await response.json().catch(() => ({}));
  $("stop-result").textContent = response.ok
    ? `stopped; watch ${node.name}'s restarts`
    : body.detail || `refused (${response.status})`;
});

let refreshing = false;
async function refresh() {
  if (refreshing || !state.started) return; // a slow round must not pile up behind itself
  refreshing = true;
  try {
    await Promise.all(state.panes.map(async (pane) => {
      const section = $(`service-${pane.label}`);
      try {
        const response = await fetch(`${base(pane)}/tree?sample=20`, { headers: auth() });
        if (response.status === 401) return signOut();
        if (!response.ok) throw new Error(`${response.status}`);
        const tree = await response.json();
        section.classList.remove("down");
        annotate(pane, tree, true);
        pane.tree = tree;
        draw(pane);
      } catch (error) {
        section.classList.add("down");
      }
    }));
  } finally {
    refreshing = false;
  }
  $("status").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

// Marks each node once per snapshot (root, restart count just moved, selected), so the list
// and the graph agree, and keeps the details column on the fresh copy of the selected actor.
function annotate(pane, node, root) {
  const key = keyOf(pane, node);
  node.root = root;
  const before = state.restarts.get(key);
  state.restarts.set(key, node.restarts);
  node.moved = before !== undefined && node.restarts > before;
  if (state.selected && state.selected.pane === pane && keyOf(pane, state.selected.node) === key) {
    state.selected.node = node;
    showDetails(pane, node, false);
  }
  for (const child of node.children || []) annotate(pane, child, false);
}

const isSelected = (pane, node) =>
  Boolean(state.selected && state.selected.pane === pane && state.selected.node === node);

function select(pane, node) {
  state.selected = { pane, node };
  showDetails(pane, node, true);
  for (const other of state.panes) if (other.tree) draw(other);
}

function draw(pane) {
  const section = $(`service-${pane.label}`);
  const counts = tally(pane.tree);
  section.querySelector(".totals").textContent = totalsText(counts);
  section.querySelector(".counts").innerHTML = countChips(counts);
  // Only the picture on show is built; the other is emptied so stale copies never linger.
  const list = section.querySelector(".tree");
  const graph = section.querySelector(".graph");
  if (state.mode === "list") {
    list.replaceChildren(render(pane, pane.tree));
    graph.replaceChildren();
  } else {
    graph.replaceChildren(drawGraph(pane, pane.tree));
    list.replaceChildren();
  }
}

// Counts per actor kind: awake (running), hibernated, restarting (any status but running).
// A big group lists only a sample: the members it does not list are counted as awake, and a
// registry that hibernates says how many sleep in its `detail` ("12 awake, 3 hibernated").
function tally(tree) {
  const counts = new Map();
  const row = (kind) => {
    if (!counts.has(kind)) counts.set(kind, { awake: 0, hibernated: 0, restarting: 0 });
    return counts.get(kind);
  };
  (function walk(node) {
    if (node.status === "running") row(node.kind).awake++; else row(node.kind).restarting++;
    const children = node.children || [];
    children.forEach(walk);
    const unlisted = (node.children_total || children.length) - children.length;
    const sleeping = hibernatedIn(node);
    if (unlisted > 0 || sleeping > 0) {
      const members = row(children.length ? children[0].kind : "entity");
      members.awake += unlisted;
      members.hibernated += sleeping;
    }
  })(tree);
  return counts;
}

function hibernatedIn(node) {
  const match = /(\d+) hibernated/.exec(node.detail || "");
  return match ? Number(match[1]) : 0;
}

function totalsText(counts) {
  const sum = { awake: 0, hibernated: 0, restarting: 0 };
  for (const row of counts.values()) for (const field in sum) sum[field] += row[field];
  return `${number(sum.awake)} awake · ${number(sum.hibernated)} hibernated · ${number(sum.restarting)} restarting`;
}

// One chip per kind: the awake count always, hibernated and restarting only when not zero
// (the pane's heading has all three totals), so what needs attention stands out.
function countChips(counts) {
  return [...counts].map(([kind, row]) =>
    `<span class="kind-count${row.restarting ? " restarting" : ""}" data-kind="${escape(kind)}"` +
    ` data-awake="${row.awake}" data-hibernated="${row.hibernated}" data-restarting="${row.restarting}"` +
    ` title="${escape(kind)}: ${number(row.awake)} awake, ${number(row.hibernated)} hibernated, ${number(row.restarting)} restarting">` +
    `<span class="k">${escape(kind)}</span> <b class="awake">${number(row.awake)}</b>` +
    (row.hibernated || row.restarting ? " awake" : "") +
    (row.hibernated ? ` <span class="hib">${number(row.hibernated)} hibernated</span>` : "") +
    (row.restarting ? ` <span class="rst">${number(row.restarting)} restarting</span>` : "") +
    `</span>`).join("");
}

// The list: one line per actor, collapsible (<details>), long names wrap instead of being cut.
function line(pane, node) {
  const restartClass = node.moved ? "moved" : node.restarts > 0 ? "some" : "";
  const span = document.createElement("span");
  span.className = "actor";
  span.dataset.name = node.name || "";
  span.dataset.restarts = node.restarts;
  const figures = node.mean_handling_ms !== undefined
    ? ` msgs=${node.messages} avg=${node.mean_handling_ms.toFixed(2)}ms` : "";
  span.innerHTML =
    `<span class="name">${escape(node.name || "-")}</span> <span class="kind">[${escape(node.kind)}]</span> ` +
    `<span class="${escape(node.status)}">${escape(node.status)}</span> ` +
    `<span class="restarts ${restartClass}">restarts=${node.restarts}</span>` +
    (node.restart ? ` policy=${escape(node.restart)}` : "") + figures +
    (node.detail ? ` <span class="detail">${escape(node.detail)}</span>` : "");
  if (isSelected(pane, node)) span.classList.add("selected");
  span.addEventListener("click", (event) => {
    event.preventDefault(); // a click on the line selects; the triangle folds
    select(pane, node);
  });
  return span;
}

function render(pane, node) {
  const key = keyOf(pane, node);
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
  for (const child of node.children) details.appendChild(render(pane, child));
  if (node.children_total && node.children_total > node.children.length) {
    const more = document.createElement("div");
    more.className = "more";
    more.textContent = `… ${number(node.children_total - node.children.length)} more (${number(node.children_total)} in all)`;
    details.appendChild(more);
  }
  return details;
}

// The graph: boxes and elbow lines, drawn left to right like Erlang's observer (names are
// wide, trees are shallow). Sizes come from measuring the text, so no name is ever cut; a
// graph wider than its pane scrolls horizontally from its left edge.
const SVG = "http://www.w3.org/2000/svg";
const BOX = { line: 14, gapY: 8, gapX: 26, pad: 7, titleFont: "600 12px ui-monospace, monospace", subFont: "11px system-ui, sans-serif" };
const measurer = document.createElement("canvas").getContext("2d");
function textWidth(text, font) {
  measurer.font = font;
  return measurer.measureText(text).width;
}

// The tree as boxes: a big group becomes one box with counts instead of a box per member.
function graphNode(node) {
  const children = node.children || [];
  const total = node.children_total || children.length;
  const sleeping = hibernatedIn(node);
  if (total > GRAPH_MAX_CHILDREN || total > children.length || (sleeping > 0 && children.length === 0)) {
    const kind = children.length ? children[0].kind : "entity";
    const restarting = children.filter((child) => child.status !== "running").length;
    const restarted = children.filter((child) => child.restarts > 0).length;
    const moved = children.some((child) => child.moved);
    const trouble = [];
    if (restarting) trouble.push(`${restarting} restarting`);
    if (restarted) trouble.push(`${restarted} restarted`);
    return {
      node, actor: node, group: true, moved, children: [],
      status: restarting ? "busy" : "running",
      title: `${number(total)} × ${kind}`,
      sub: [`${number(sleeping)} hibernated`, ...(trouble.length ? [trouble.join(" · ")] : [])],
      tip: `${node.name}: ${number(total)} ${kind} actors awake (${children.length} sampled in the list), ` +
        `${number(sleeping)} hibernated. Click for the group's details.`,
    };
  }
  return {
    node, actor: node, group: false, moved: node.moved,
    status: node.status === "running" ? "running" : node.status === "stopped" ? "stopped" : "busy",
    title: node.name || "-",
    // The colour says running; any other status is spelled out.
    sub: [[node.kind, node.status === "running" ? "" : node.status, node.restarts ? `restarts=${node.restarts}` : ""]
      .filter(Boolean).join(" · ")],
    tip: `${node.name || node.id} [${node.kind}] ${node.status}, restarts=${node.restarts}` +
      (node.detail ? `\n${node.detail}` : ""),
    children: children.map(graphNode),
  };
}

function drawGraph(pane, tree) {
  const root = graphNode(tree);
  // Column widths per depth, then top-down: a leaf goes below the previous leaf, a parent sits
  // centred on its children. Boxes are as tall as their lines (a group box has more).
  const widths = [];
  let bottom = 4;
  (function place(box, depth) {
    box.depth = depth;
    box.width = Math.ceil(Math.max(textWidth(box.title, BOX.titleFont),
      ...box.sub.map((text) => textWidth(text, BOX.subFont)))) + 2 * BOX.pad;
    box.height = 10 + BOX.line * (1 + box.sub.length);
    widths[depth] = Math.max(widths[depth] || 0, box.width);
    if (box.children.length === 0) {
      box.y = bottom;
      bottom += box.height + BOX.gapY;
    } else {
      box.children.forEach((child) => place(child, depth + 1));
      const first = box.children[0], last = box.children[box.children.length - 1];
      box.y = (first.y + first.height / 2 + last.y + last.height / 2) / 2 - box.height / 2;
    }
  })(root, 0);
  const columnX = [0];
  for (let depth = 1; depth < widths.length; depth++) columnX[depth] = columnX[depth - 1] + widths[depth - 1] + BOX.gapX;
  const width = columnX[widths.length - 1] + widths[widths.length - 1] + 10;
  const height = bottom + 2;

  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `${pane.label}'s supervision tree`);
  const edges = el("g", { class: "edges" });
  const boxes = el("g", { class: "boxes" });
  svg.append(edges, boxes);
  (function paint(box) {
    const x = columnX[box.depth] + 2;
    const y = box.y;
    const g = el("g", {
      class: `gnode ${box.status}${box.group ? " group" : ""}${box.moved ? " moved" : ""}` +
        `${isSelected(pane, box.actor) ? " selected" : ""}`,
      transform: `translate(${x},${y})`,
      tabindex: "0",
      "data-name": box.group ? `${box.node.name || ""}/*` : box.node.name || "",
    });
    if (box.group) {
      // A stack of cards: many members behind one box.
      g.append(el("rect", { class: "behind", x: 6, y: -4, width: box.width, height: box.height, rx: 4 }));
      g.append(el("rect", { class: "behind", x: 3, y: -2, width: box.width, height: box.height, rx: 4 }));
    }
    g.append(el("rect", { width: box.width, height: box.height, rx: 4 }));
    g.append(el("text", { class: "title", x: BOX.pad, y: 5 + BOX.line - 2 }, box.title));
    box.sub.forEach((text, index) =>
      g.append(el("text", { class: "sub", x: BOX.pad, y: 5 + BOX.line * (index + 2) - 3 }, text)));
    g.append(el("title", {}, box.tip));
    g.addEventListener("click", () => select(pane, box.actor));
    g.addEventListener("keydown", (event) => { if (event.key === "Enter") select(pane, box.actor); });
    boxes.append(g);
    for (const child of box.children) {
      const fromX = x + box.width, fromY = y + box.height / 2;
      const toX = columnX[child.depth] + 2, toY = child.y + child.height / 2;
      const midX = fromX + BOX.gapX / 2;
      edges.append(el("path", { class: "edge", d: `M${fromX},${fromY} H${midX} V${toY} H${toX}` }));
      paint(child);
    }
  })(root);
  return svg;
}

function el(name, attributes, text) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function showDetails(pane, node, fresh) {
  $("details-empty").hidden = true;
  $("details-body").hidden = false;
  $("details-name").textContent = `${pane.label}: ${node.name || node.id}`;
  const fields = {
    kind: node.kind, status: node.status, restart: node.restart || "-", restarts: node.restarts,
    "last failure": node.last_failure || "-",
    state: node.detail || "-",
    started: node.started_at || "-", messages: node.messages,
    "mean handling": node.mean_handling_ms !== undefined ? `${node.mean_handling_ms.toFixed(2)} ms` : "-",
    children: node.children_total || (node.children || []).length, id: node.id,
  };
  $("details-fields").replaceChildren(...definitions(fields));
  $("stop").disabled = node.root || !node.name;
  if (fresh) $("stop-result").textContent = "";
}

// <dt>/<dd> pairs; textContent, so nothing in a value is read as HTML.
function definitions(fields) {
  return Object.entries(fields).flatMap(([name, value]) => {
    const dt = document.createElement("dt"); dt.textContent = name;
    const dd = document.createElement("dd"); dd.textContent = value;
    dd.dataset.field = name;
    return [dt, dd];
  });
}

// ---------------------------------------------------------------------------------------------
// Traces

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const TRACE_ID = /^[0-9a-f]{32}$/i;
const TRACEPARENT = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/i;

// Known services keep their colour from trace to trace; any other gets one by its name.
const SERVICE_COLOURS = {
  user: "#4e79a7", product: "#e8790c", cart: "#3f9a3a", order: "#8e5fc9",
  payment: "#b8900a", notification: "#1f9aa0", nginx: "#6d6d6d", gateway: "#6d6d6d",
};
const SPARE_COLOURS = ["#a0522d", "#d05a9c", "#2f6fb0", "#7a8a12", "#5a5aa8", "#3d7f6a"];
function colourOf(service) {
  if (SERVICE_COLOURS[service]) return SERVICE_COLOURS[service];
  let hash = 0;
  for (const c of String(service)) hash = (hash * 31 + c.charCodeAt(0)) >>> 0;
  return SPARE_COLOURS[hash % SPARE_COLOURS.length];
}

$("trace-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const query = $("trace-query").value.trim();
  history.replaceState(null, "", `${location.pathname}${location.search}#trace=${encodeURIComponent(query)}`);
  loadTrace(query);
});
$("recent-refresh").addEventListener("click", loadRecent);
$("recent-min").addEventListener("change", loadRecent);

function traceMessage(text, kind) {
  const message = $("trace-message");
  message.textContent = text;
  message.dataset.state = kind; // idle | loading | ok | notfound | error: a hook for scripts
}

// What the query is, and where to ask for it.
function traceSource(query) {
  const parent = TRACEPARENT.exec(query);
  if (parent) query = parent[1];
  if (UUID.test(query)) {
    return { what: `order ${query}`, url: `/admin/traces?order_id=${encodeURIComponent(query.toLowerCase())}` };
  }
  if (TRACE_ID.test(query)) {
    return { what: `trace id ${query}`, url: `/admin/traces/${query.toLowerCase()}` };
  }
  return { what: `request id ${query}`, url: `/admin/traces?request_id=${encodeURIComponent(query)}` };
}

async function loadTrace(query) {
  query = query.trim();
  if (!query) {
    traceMessage("enter an order id (UUID), a request id or a trace id (32 hex digits)", "error");
    return;
  }
  const { what, url } = traceSource(query);
  const seq = ++state.traceSeq;
  traceMessage(`loading the trace of ${what}…`, "loading");
  clearTrace();
  let response, body;
  try {
    response = await fetch(url, { headers: auth() });
    body = await response.json().catch(() => null);
  } catch (error) {
    if (seq === state.traceSeq) traceMessage(`could not reach the gateway: ${error.message}`, "error");
    return;
  }
  if (seq !== state.traceSeq) return; // the operator asked for another trace meanwhile
  if (response.status === 401) return signOut();
  if (response.status === 404) {
    // The service's own "no trace for …" would only repeat ours; any other detail is added.
    const detail = body && body.detail;
    traceMessage(`no trace for ${what}` + (!detail
      ? " (404 without details: are the trace endpoints deployed?)"
      : /^no trace/i.test(detail) ? "" : ` (${detail})`), "notfound");
    return;
  }
  if (!response.ok || !body || !Array.isArray(body.spans)) {
    const why = (body && body.detail) || `${response.status} ${response.statusText}`.trim();
    traceMessage(`could not load the trace of ${what}: ${why}`, "error");
    return;
  }
  if (body.spans.length === 0) {
    traceMessage(`no trace for ${what} (the trace has no spans yet)`, "notfound");
    return;
  }
  drawTrace(body);
  traceMessage(`${body.spans.length} spans`, "ok");
}

function clearTrace() {
  state.trace = null;
  $("trace").hidden = true;
  $("waterfall").replaceChildren();
  $("span-details").innerHTML = `<p class="hint">Click a span to see its attributes.</p>`;
}

// Spans as a tree: parents before children, siblings by start time. A span whose parent is
// not in the list is a root; a span caught in a parent cycle is shown as a root too.
function orderSpans(spans) {
  const byId = new Map(spans.map((span) => [span.span_id, span]));
  const children = new Map();
  const roots = [];
  for (const span of spans) {
    const parent = span.parent_id;
    if (parent && parent !== span.span_id && byId.has(parent)) {
      if (!children.has(parent)) children.set(parent, []);
      children.get(parent).push(span);
    } else {
      roots.push(span);
    }
  }
  const byStart = (a, b) => a.start_us - b.start_us || b.duration_us - a.duration_us;
  const rows = [];
  const seen = new Set();
  const visit = (span, depth) => {
    if (seen.has(span.span_id)) return;
    seen.add(span.span_id);
    rows.push({ span, depth, orphan: Boolean(span.parent_id) && !byId.has(span.parent_id) });
    for (const child of (children.get(span.span_id) || []).sort(byStart)) visit(child, depth + 1);
  };
  roots.sort(byStart).forEach((span) => visit(span, 0));
  spans.filter((span) => !seen.has(span.span_id)).sort(byStart).forEach((span) => visit(span, 0));
  return rows;
}

function drawTrace(data) {
  const spans = data.spans.map((span) => ({
    ...span,
    start_us: Number(span.start_us) || 0,
    duration_us: Math.max(0, Number(span.duration_us) || 0),
    attributes: span.attributes || {},
  }));
  const rows = orderSpans(spans);
  const t0 = Math.min(...spans.map((span) => span.start_us));
  const t1 = Math.max(...spans.map((span) => span.start_us + span.duration_us));
  const total = Math.max(t1 - t0, 1);
  state.trace = { data, rows, t0, total };

  // Header and legend: services in order of first appearance in the tree.
  const services = [];
  for (const { span } of rows) if (!services.includes(span.service)) services.push(span.service);
  const errors = spans.filter((span) => span.error).length;
  $("trace-header").innerHTML =
    `<span>trace <code id="trace-id">${escape(data.trace_id || "?")}</code></span>` +
    `<span><b>${escape(duration(total))}</b> in all</span>` +
    `<span><b>${spans.length}</b> span${spans.length === 1 ? "" : "s"}</span>` +
    `<span>${services.length} service${services.length === 1 ? "" : "s"}: ${escape(services.join(", "))}</span>` +
    (errors ? `<span class="has-errors">${errors} error${errors === 1 ? "" : "s"}</span>` : "") +
    `<span class="muted">started ${escape(clock(t0))}</span>`;
  $("trace-legend").innerHTML = services.map((service) =>
    `<span class="legend-item"><span class="swatch" style="background:${colourOf(service)}"></span>` +
    `${escape(service)} <span class="muted">(${spans.filter((span) => span.service === service).length})</span></span>`,
  ).join("") + (errors ? `<span class="legend-item"><span class="swatch error-swatch"></span>error</span>` : "");
  $("trace").hidden = false;

  // The axis: a tick every quarter of the trace.
  const axis = document.createElement("div");
  axis.className = "wf-axis";
  axis.innerHTML = `<div class="span-label">service · span</div><div class="span-track">` +
    [0, 25, 50, 75, 100].map((pct) =>
      `<span class="tick${pct === 100 ? " last" : ""}" style="left:${pct}%">${escape(duration(total * pct / 100))}</span>`).join("") +
    `</div>`;

  const holder = document.createDocumentFragment();
  holder.append(axis);
  for (const { span, depth, orphan } of rows) holder.append(spanRow(span, depth, orphan, t0, total));
  $("waterfall").replaceChildren(holder);
}

function spanRow(span, depth, orphan, t0, total) {
  const row = document.createElement("div");
  row.className = `span-row${span.error ? " error" : ""}`;
  row.tabIndex = 0;
  row.setAttribute("role", "button");
  row.dataset.service = span.service || "";
  row.dataset.name = span.name || "";
  row.dataset.spanId = span.span_id || "";
  row.dataset.parentId = span.parent_id || "";
  row.dataset.depth = depth;
  row.style.setProperty("--depth", depth);
  row.style.setProperty("--colour", colourOf(span.service));

  const start = (span.start_us - t0) / total * 100;
  const width = span.duration_us / total * 100;
  const end = start + width;
  // Duration text after the bar; before it when the bar ends near the right edge; inside
  // (white) when the bar is too wide for either.
  const [place, offset] = end <= 72 ? ["after", `left:calc(${end}% + 4px)`]
    : start >= 28 ? ["before", `right:calc(${100 - start}% + 4px)`]
    : ["inside", `left:calc(${start}% + 4px)`];
  row.innerHTML =
    `<div class="span-label">` +
      `<span class="svc">${escape(span.service || "?")}</span> ` +
      `<span class="span-name">${escape(span.name || "(unnamed)")}</span>` +
      (span.kind ? ` <span class="span-kind">${escape(span.kind)}</span>` : "") +
      (span.error ? ` <span class="error-badge">error</span>` : "") +
      (orphan ? ` <span class="orphan" title="its parent span ${escape(span.parent_id)} is not in the trace">↖ parent missing</span>` : "") +
    `</div>` +
    `<div class="span-track">` +
      `<span class="bar" style="left:${start}%;width:${width}%"></span>` +
      `<span class="dur ${place}" style="${offset}">${escape(duration(span.duration_us))}</span>` +
    `</div>`;
  row.title = `${span.service}: ${span.name} — ${duration(span.duration_us)} from +${duration(span.start_us - t0)}`;
  const open = () => showSpan(span, row);
  row.addEventListener("click", open);
  row.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") { event.preventDefault(); open(); }
    // Arrow keys walk the rows.
    const next = event.key === "ArrowDown" ? row.nextElementSibling
      : event.key === "ArrowUp" ? row.previousElementSibling : null;
    if (next && next.classList.contains("span-row")) { event.preventDefault(); next.focus(); next.click(); }
  });
  return row;
}

function showSpan(span, row) {
  for (const other of document.querySelectorAll("#waterfall .span-row.selected")) other.classList.remove("selected");
  row.classList.add("selected");
  const { t0 } = state.trace;
  const side = $("span-details");
  side.innerHTML = `<h2></h2><dl class="span-fields"></dl><h3>Attributes</h3><dl class="span-attributes"></dl>`;
  side.querySelector("h2").textContent = `${span.service}: ${span.name}`;
  side.querySelector("h2").style.borderLeftColor = colourOf(span.service);
  side.querySelector(".span-fields").replaceChildren(...definitions({
    service: span.service, name: span.name, kind: span.kind || "-",
    duration: duration(span.duration_us),
    start: `+${duration(span.start_us - t0)} (${clock(span.start_us)})`,
    error: span.error ? "yes" : "no",
    "span id": span.span_id, "parent id": span.parent_id || "none (a root)",
  }));
  const attributes = Object.keys(span.attributes).sort();
  const list = side.querySelector(".span-attributes");
  if (attributes.length) {
    list.replaceChildren(...definitions(Object.fromEntries(attributes.map((key) => [key, String(span.attributes[key])]))));
  } else {
    list.outerHTML = `<p class="hint">none</p>`;
  }
  if (span.error) side.querySelector('[data-field="error"]').classList.add("error");
}

// Recent slow requests, newest first; a click opens the trace.
async function loadRecent() {
  state.recentLoaded = true;
  const min = Math.max(0, Number($("recent-min").value) || 0);
  const body = $("recent-traces").tBodies[0];
  $("recent-message").textContent = "loading…";
  let response, data;
  try {
    response = await fetch(`/admin/traces/recent?min_duration_ms=${min}&limit=20`, { headers: auth() });
    data = await response.json().catch(() => null);
  } catch (error) {
    $("recent-message").textContent = `could not reach the gateway: ${error.message}`;
    return;
  }
  if (response.status === 401) return signOut();
  if (!response.ok || !data || !Array.isArray(data.traces)) {
    $("recent-message").textContent = `recent traces unavailable: ${(data && data.detail) || response.status}`;
    body.replaceChildren();
    return;
  }
  $("recent-message").textContent = data.traces.length
    ? `${data.traces.length} shown, newest first` : `no request took ${min} ms or more lately`;
  body.innerHTML = data.traces.map((trace) =>
    `<tr class="recent-row" tabindex="0" data-trace-id="${escape(trace.trace_id)}">` +
    `<td>${escape(clock(trace.start_us))}</td>` +
    `<td><span class="swatch" style="background:${colourOf(trace.service)}"></span>${escape(trace.service)}</td>` +
    `<td class="wrap">${escape(trace.name)}</td>` +
    `<td class="num">${escape(duration(trace.duration_us))}</td>` +
    `<td class="num">${escape(trace.spans)}</td>` +
    `<td><code>${escape(trace.trace_id)}</code></td></tr>`).join("");
  for (const tr of body.rows) {
    const open = () => {
      $("trace-query").value = tr.dataset.traceId;
      history.replaceState(null, "", `${location.pathname}${location.search}#trace=${encodeURIComponent(tr.dataset.traceId)}`);
      loadTrace(tr.dataset.traceId);
    };
    tr.addEventListener("click", open);
    tr.addEventListener("keydown", (event) => { if (event.key === "Enter") open(); });
  }
}

// ---------------------------------------------------------------------------------------------
// Formatting

// Microseconds as "850 µs", "3.2 ms", "123 ms", "1.25 s".
function duration(us) {
  if (us === 0) return "0";
  if (us < 1000) return `${Math.round(us)} µs`;
  const ms = us / 1000;
  if (ms < 100) return `${ms.toFixed(1)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}

// Epoch microseconds as local wall-clock time to the millisecond.
function clock(us) {
  const date = new Date(us / 1000);
  return `${date.toLocaleTimeString([], { hour12: false })}.${String(date.getMilliseconds()).padStart(3, "0")}`;
}

const number = (n) => Number(n).toLocaleString("en");

function escape(text) {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
}

if (state.token) start();
