// The Graph page: the live service graph (cytoscape + dagre), lock badges on mTLS edges,
// health colours, edge labels, a side panel per node or edge, and a list view of both.
import cytoscape, { Core, EdgeSingular, NodeSingular, ElementDefinition } from "cytoscape";
import dagre from "cytoscape-dagre";
import { get } from "./api";
import { panel } from "./charts";
import { Child, clear, fmt, h, select, table } from "./dom";
import { configList } from "./configview";

cytoscape.use(dagre);

export interface GraphNode {
  id: string;
  nodeType: string;
  namespace: string;
  label: string;
  workload: string;
  app: string;
  version: string;
  service: string;
  workloads: string[];
  isRoot: boolean;
  isIngress: boolean;
  health: string;
  rateIn: number;
  rateOut: number;
  errorPct: number;
}

export interface GraphEdge {
  id: string;
  source: string;
  target: string;
  protocol: string;
  rate: number;
  errorPct: number;
  pct5xx: number;
  pct4xx: number;
  responses: Record<string, number>;
  flags: Record<string, number>;
  mtlsPct: number | null;
  bytesPerSec: number;
  health: string;
  p50: number | null;
  p95: number | null;
  p99: number | null;
}

export interface Graph {
  graphType: string;
  duration: string;
  nodes: GraphNode[];
  edges: GraphEdge[];
  timings: { queryMs: number; buildMs: number };
}

export const HEALTH_COLORS: Record<string, string> = {
  healthy: "#3f9c35",
  degraded: "#ec7a08",
  failure: "#cc0000",
  idle: "#8a8d90",
};

const SHAPES: Record<string, string> = {
  workload: "ellipse",
  app: "round-rectangle",
  versionedApp: "round-rectangle",
  service: "triangle",
  unknown: "diamond",
  passthrough: "rectangle",
};

const DURATION_SECONDS: Record<string, number> = { "1m": 60, "5m": 300, "1h": 3600 };

interface State {
  namespace: string;
  graphType: string;
  duration: string;
  edgeLabel: string;
  refresh: number;
}

const state: State = { namespace: "", graphType: "workload", duration: "5m", edgeLabel: "rate", refresh: 15 };

export function edgeLabel(e: GraphEdge, mode: string): string {
  if (e.protocol === "tcp") return mode === "none" ? "" : `${fmt(e.bytesPerSec, 0)} B/s`;
  switch (mode) {
    case "rate":
      return `${fmt(e.rate, 2)} rps`;
    case "error":
      return `${fmt(e.errorPct, 1)}%`;
    case "p50":
    case "p95":
    case "p99": {
      const v = e[mode];
      return v === null ? "" : `${mode} ${fmt(v, v < 10 ? 1 : 0)}ms`;
    }
    case "rt":
      return e.p50 === null ? "" : `${fmt(e.p50, 0)}/${fmt(e.p95, 0)}/${fmt(e.p99, 0)}ms`;
    default:
      return "";
  }
}

const LOCK_SVG =
  '<svg viewBox="0 0 16 16" width="12" height="12" aria-hidden="true"><path fill="currentColor" ' +
  'd="M4 7V5a4 4 0 1 1 8 0v2h1v8H3V7h1zm2 0h4V5a2 2 0 1 0-4 0v2z"/></svg>';

let cy: Core | null = null;
let timer: number | undefined;
let current: Graph | null = null;

function elements(g: Graph): ElementDefinition[] {
  const nodes = g.nodes.map((n) => ({
    group: "nodes" as const,
    data: {
      id: n.id,
      label: n.isIngress ? `${n.label}\n(ingress)` : n.label,
      color: HEALTH_COLORS[n.health] ?? HEALTH_COLORS.idle,
      shape: n.isIngress ? "hexagon" : SHAPES[n.nodeType] ?? "ellipse",
      health: n.health,
    },
  }));
  const edges = g.edges.map((e) => ({
    group: "edges" as const,
    data: {
      id: e.id,
      source: e.source,
      target: e.target,
      label: edgeLabel(e, state.edgeLabel),
      color: e.health === "healthy" ? "#6a6e73" : HEALTH_COLORS[e.health] ?? HEALTH_COLORS.idle,
      health: e.health,
      style: e.protocol === "tcp" ? "dashed" : "solid",
    },
  }));
  return [...nodes, ...edges];
}

function placeBadges(container: HTMLElement): void {
  if (!cy || !current) return;
  const overlay = container.querySelector<HTMLElement>(".badges");
  if (!overlay) return;
  clear(overlay);
  for (const e of current.edges) {
    if (e.mtlsPct === null || e.mtlsPct <= 0) continue;
    const edge = cy.getElementById(e.id);
    if (edge.empty()) continue;
    const p = (edge as EdgeSingular).renderedMidpoint();
    const partial = e.mtlsPct < 99.95;
    const badge = h("span", {
      class: partial ? "lock-badge partial" : "lock-badge",
      "data-edge": e.id,
      "data-mtls": String(e.mtlsPct),
      title: `mTLS ${fmt(e.mtlsPct, 1)}% of requests`,
      style: `left:${p.x}px;top:${p.y}px`,
      role: "img",
      "aria-label": `mutual TLS ${fmt(e.mtlsPct, 0)}%`,
    });
    badge.innerHTML = LOCK_SVG + (partial ? `<span>${fmt(e.mtlsPct, 0)}%</span>` : "");
    overlay.appendChild(badge);
  }
}

function listView(g: Graph, onPick: (kind: "node" | "edge", id: string) => void): HTMLElement {
  const names = new Map(g.nodes.map((n) => [n.id, n.label]));
  const nodes = table(
    ["Node", "Type", "Namespace", "Health", "In (rps)", "Out (rps)", "Error %"],
    g.nodes.map((n) => [
      h("a", { href: "#", "data-node": n.id, onclick: (ev: Event) => { ev.preventDefault(); onPick("node", n.id); } }, n.label),
      n.isIngress ? "ingress" : n.nodeType,
      n.namespace,
      h("span", { class: `health ${n.health}` }, n.health),
      fmt(n.rateIn),
      fmt(n.rateOut),
      fmt(n.errorPct, 1),
    ]),
    { id: "graph-nodes", class: "list" },
  );
  const edges = table(
    ["From", "To", "Protocol", "Rate", "Error %", "p50 ms", "p95 ms", "p99 ms", "mTLS %", "Health"],
    g.edges.map((e) => [
      h("a", { href: "#", "data-edge": e.id, onclick: (ev: Event) => { ev.preventDefault(); onPick("edge", e.id); } }, names.get(e.source) ?? e.source),
      names.get(e.target) ?? e.target,
      e.protocol,
      e.protocol === "tcp" ? `${fmt(e.bytesPerSec, 0)} B/s` : `${fmt(e.rate)} rps`,
      fmt(e.errorPct, 1),
      fmt(e.p50, 1),
      fmt(e.p95, 1),
      fmt(e.p99, 1),
      e.mtlsPct === null ? "-" : fmt(e.mtlsPct, 0),
      h("span", { class: `health ${e.health}` }, e.health),
    ]),
    { id: "graph-edges", class: "list" },
  );
  return h("div", { class: "list-view" }, h("h2", {}, "Nodes"), nodes, h("h2", {}, "Edges"), edges);
}

function nodeQueries(n: GraphNode): { sel: string; out: string } {
  if (n.nodeType === "service") {
    return { sel: `destination_service_name="${n.service}",destination_service_namespace="${n.namespace}"`, out: "" };
  }
  if (n.nodeType === "app" || n.nodeType === "versionedApp") {
    const v = n.nodeType === "versionedApp" ? `,destination_version="${n.version}"` : "";
    const sv = n.nodeType === "versionedApp" ? `,source_version="${n.version}"` : "";
    return {
      sel: `destination_app="${n.app}",destination_workload_namespace="${n.namespace}"${v}`,
      out: `source_app="${n.app}",source_workload_namespace="${n.namespace}"${sv}`,
    };
  }
  return {
    sel: `destination_workload="${n.workload}",destination_workload_namespace="${n.namespace}"`,
    out: `source_workload="${n.workload}",source_workload_namespace="${n.namespace}"`,
  };
}

function traceService(n: GraphNode): string {
  const name = n.app && n.app !== "unknown" ? n.app : n.service || n.workload;
  return `${name}.${n.namespace}`;
}

function edgeSelectors(g: Graph, e: GraphEdge): string {
  const src = g.nodes.find((n) => n.id === e.source);
  const dst = g.nodes.find((n) => n.id === e.target);
  const parts: string[] = ['reporter="source"'];
  if (src && src.workload) parts.push(`source_workload="${src.workload}"`);
  else if (src && src.app) parts.push(`source_app="${src.app}"`);
  if (dst && dst.workload) parts.push(`destination_workload="${dst.workload}"`);
  else if (dst && dst.service) parts.push(`destination_service_name="${dst.service}"`);
  return parts.join(",");
}

function sidePanel(container: HTMLElement, g: Graph, kind: "node" | "edge", id: string): void {
  const seconds = DURATION_SECONDS[g.duration] ?? 300;
  const rate = `[${g.duration === "1h" ? "5m" : "1m"}]`;
  clear(container);
  container.hidden = false;
  const close = h("button", { class: "close", "aria-label": "close", onclick: () => { container.hidden = true; } }, "×");
  if (kind === "node") {
    const n = g.nodes.find((x) => x.id === id);
    if (!n) return;
    container.dataset.node = id;
    const q = nodeQueries(n);
    const charts = h("div", { class: "charts" });
    const panels = [
      panel("Inbound requests", "rps", [{ query: `sum(rate(istio_requests_total{reporter="destination",${q.sel}}${rate})) by (response_code)`, legend: (m) => m.response_code ?? "" }], seconds),
      panel("Inbound duration", "ms", [0.5, 0.95, 0.99].map((p) => ({ query: `histogram_quantile(${p}, sum(rate(istio_request_duration_milliseconds_bucket{reporter="destination",${q.sel}}${rate})) by (le))`, legend: () => `p${p * 100}` })), seconds),
    ];
    if (q.out) {
      panels.push(panel("Outbound requests", "rps", [{ query: `sum(rate(istio_requests_total{reporter="source",${q.out}}${rate})) by (destination_service_name)`, legend: (m) => m.destination_service_name ?? "" }], seconds));
    }
    for (const p of panels) charts.appendChild(p.el);
    const cfg = h("div", { class: "node-config" }, "loading config...");
    container.append(
      close,
      h("h2", {}, n.label),
      h("p", {}, `${n.isIngress ? "ingress gateway" : n.nodeType} in ${n.namespace} · `, h("span", { class: `health ${n.health}` }, n.health)),
      h("p", {}, h("a", { href: `#traces?service=${encodeURIComponent(traceService(n))}`, class: "traces-link" }, "Traces of this service")),
      charts,
      h("h3", {}, "Istio config"),
      cfg,
    );
    if (n.nodeType !== "unknown" && n.nodeType !== "passthrough") {
      get<{ items: ConfigItem[] }>("/api/config/for", {
        namespace: n.namespace,
        service: n.service || n.app,
        workload: n.workload,
      })
        .then((r) => { clear(cfg).appendChild(configList(r.items)); })
        .catch((e: Error) => { cfg.textContent = e.message; });
    } else {
      cfg.textContent = "none: this node is outside the mesh";
    }
    return;
  }
  const e = g.edges.find((x) => x.id === id);
  if (!e) return;
  container.dataset.edge = id;
  const names = new Map(g.nodes.map((n) => [n.id, n.label]));
  const sel = edgeSelectors(g, e);
  const charts = h("div", { class: "charts" });
  for (const p of [
    panel("Requests", "rps", [{ query: `sum(rate(istio_requests_total{${sel}}${rate})) by (response_code)`, legend: (m) => m.response_code ?? "" }], seconds),
    panel("Duration", "ms", [0.5, 0.95, 0.99].map((p) => ({ query: `histogram_quantile(${p}, sum(rate(istio_request_duration_milliseconds_bucket{${sel}}${rate})) by (le))`, legend: () => `p${p * 100}` })), seconds),
  ]) charts.appendChild(p.el);
  const dst = g.nodes.find((n) => n.id === e.target);
  const rows: Child[][] = Object.entries(e.responses).map(([c, r]) => [c, fmt(r, 3)]);
  container.append(
    close,
    h("h2", {}, `${names.get(e.source)} → ${names.get(e.target)}`),
    h("p", {}, `${e.protocol} · ${fmt(e.rate)} rps · error ${fmt(e.errorPct, 1)}% · p50/p95/p99 ${fmt(e.p50, 1)}/${fmt(e.p95, 1)}/${fmt(e.p99, 1)} ms · mTLS ${e.mtlsPct === null ? "unknown" : fmt(e.mtlsPct, 0) + "%"}`),
    table(["Response code", "rps"], rows, { class: "list" }),
    dst ? h("p", {}, h("a", { href: `#traces?service=${encodeURIComponent(traceService(dst))}`, class: "traces-link" }, "Traces of the destination")) : "",
    charts,
  );
}

interface ConfigItem {
  kind: string;
  namespace: string;
  name: string;
  messages: { code: string; level: string; message: string; field: string | null }[];
  body: unknown;
}

export async function renderGraph(root: HTMLElement): Promise<void> {
  stopGraph();
  clear(root);
  const ns = await get<{ namespaces: string[] }>("/api/namespaces").catch(() => ({ namespaces: [] as string[] }));
  const status = h("span", { class: "status", id: "graph-status", "aria-live": "polite" });
  const cyEl = h("div", { id: "cy", role: "img", "aria-label": "service graph (the same nodes and edges are listed below)" });
  const badges = h("div", { class: "badges" });
  const canvas = h("div", { class: "graph-canvas" }, cyEl, badges);
  const side = h("aside", { class: "side-panel", id: "side-panel", hidden: true });
  const list = h("div", { id: "list-view" });
  const reload = () => { void load(); };
  const toolbar = h(
    "div",
    { class: "toolbar" },
    select("ns", "Namespace", [["", "all"], ...ns.namespaces.map((n): [string, string] => [n, n])], state.namespace, (v) => { state.namespace = v; reload(); }),
    select("graph-type", "Graph", [["app", "App"], ["versionedApp", "Versioned app"], ["workload", "Workload"], ["service", "Service"]], state.graphType, (v) => { state.graphType = v; reload(); }),
    select("duration", "Last", [["1m", "1m"], ["5m", "5m"], ["1h", "1h"]], state.duration, (v) => { state.duration = v; reload(); }),
    select("edge-label", "Edge labels", [["none", "none"], ["rate", "request rate"], ["error", "error %"], ["p50", "p50"], ["p95", "p95"], ["p99", "p99"], ["rt", "p50/p95/p99"]], state.edgeLabel, (v) => { state.edgeLabel = v; redraw(); }),
    select("refresh", "Refresh", [["0", "off"], ["5", "5s"], ["15", "15s"], ["60", "1m"]], String(state.refresh), (v) => { state.refresh = Number(v); schedule(); }),
    h("button", { id: "graph-refresh", onclick: reload }, "Refresh"),
    status,
  );
  root.append(toolbar, h("div", { class: "graph-layout" }, canvas, side), list);

  cy = cytoscape({
    container: cyEl,
    minZoom: 0.2,
    maxZoom: 3,
    wheelSensitivity: 0.3,
    style: [
      {
        selector: "node",
        style: {
          "background-color": "data(color)",
          shape: "data(shape)" as never,
          label: "data(label)",
          "text-wrap": "wrap",
          "text-valign": "bottom",
          "text-margin-y": 4,
          "font-size": 11,
          "font-family": "DejaVu Sans, Liberation Sans, sans-serif",
          width: 28,
          height: 28,
          "border-width": 2,
          "border-color": "#fff",
        },
      },
      { selector: "node:selected", style: { "border-color": "#0066cc", "border-width": 4 } },
      {
        selector: "edge",
        style: {
          width: 2,
          "line-color": "data(color)",
          "target-arrow-color": "data(color)",
          "target-arrow-shape": "triangle",
          "curve-style": "bezier",
          "line-style": "data(style)" as never,
          label: "data(label)",
          "font-size": 9,
          "text-rotation": "autorotate",
          "text-background-color": "#fff",
          "text-background-opacity": 0.85,
          "text-background-padding": "1px",
          "text-margin-y": -8,
          "font-family": "DejaVu Sans, Liberation Sans, sans-serif",
        },
      },
      { selector: "edge:selected", style: { width: 4 } },
    ],
  });
  (window as unknown as { pilotfish: unknown }).pilotfish = { cy, graph: () => current };
  cy.on("render", () => placeBadges(canvas));
  new ResizeObserver(() => { cy?.resize(); placeBadges(canvas); }).observe(cyEl);
  const pick = (kind: "node" | "edge", id: string) => {
    if (current) sidePanel(side, current, kind, id);
    cy?.$(":selected").unselect();
    cy?.getElementById(id).select();
  };
  cy.on("tap", "node", (ev) => pick("node", (ev.target as NodeSingular).id()));
  cy.on("tap", "edge", (ev) => pick("edge", (ev.target as EdgeSingular).id()));

  let shape = "";
  function redraw(): void {
    if (!cy || !current) return;
    const g = current;
    const newShape = g.nodes.map((n) => n.id).join() + "|" + g.edges.map((e) => e.id).join();
    if (newShape !== shape) {
      cy.elements().remove();
      cy.add(elements(g));
      cy.layout({ name: "dagre", rankDir: "LR", nodeSep: 40, rankSep: 110 } as cytoscape.LayoutOptions).run();
      cy.fit(undefined, 30);
      shape = newShape;
    } else {
      for (const el of elements(g)) cy.getElementById(el.data.id!).data(el.data);
    }
    placeBadges(canvas);
    clear(list).appendChild(listView(g, pick));
  }

  // Loads overlap (the refresh timer, the button, a changed option) and may answer out of
  // order: only the latest one started may replace the graph shown.
  let started = 0;
  async function load(): Promise<void> {
    const mine = ++started;
    status.textContent = "loading...";
    try {
      const params: Record<string, string> = { graphType: state.graphType, duration: state.duration };
      if (state.namespace) params.namespaces = state.namespace;
      const t0 = performance.now();
      const answer = await get<Graph>("/api/graph", params);
      if (mine !== started) return;
      current = answer;
      const t1 = performance.now();
      redraw();
      // The next frame is painted: what the user sees.
      await new Promise<void>((r) => requestAnimationFrame(() => requestAnimationFrame(() => r())));
      const t2 = performance.now();
      root.dataset.loadMs = String(Math.round(t1 - t0));
      root.dataset.renderMs = String(Math.round(t2 - t1));
      root.dataset.loaded = String(Date.now());
      status.textContent = `${current.nodes.length} nodes, ${current.edges.length} edges · updated ${new Date().toLocaleTimeString()}`;
      if (!current.nodes.length) status.textContent += " · no traffic in this time range: send some requests";
      const openNode = side.hidden ? undefined : side.dataset.node;
      if (openNode && current.nodes.some((n) => n.id === openNode)) {
        // keep the open side panel (its charts refresh on their own click)
      }
    } catch (e) {
      if (mine === started) status.textContent = `error: ${(e as Error).message}`;
    }
  }

  function schedule(): void {
    if (timer !== undefined) window.clearInterval(timer);
    timer = undefined;
    if (state.refresh > 0) timer = window.setInterval(() => void load(), state.refresh * 1000);
  }

  await load();
  schedule();
}

export function stopGraph(): void {
  if (timer !== undefined) window.clearInterval(timer);
  timer = undefined;
  if (cy) cy.destroy();
  cy = null;
}
