// The Metrics page: the panels of Istio's Grafana dashboards (mesh, service, workload), each a
// PromQL range query against the mesh's Prometheus.
import { get } from "./api";
import { panel, PanelQuery } from "./charts";
import { clear, h, select } from "./dom";
import type { Graph } from "./graph";

interface Scope {
  kind: string; // mesh | service | workload
  name: string; // ns/name
  seconds: number;
}

const scope: Scope = { kind: "mesh", name: "", seconds: 900 };

function q(query: string, legend: (m: Record<string, string>) => string): PanelQuery {
  return { query, legend };
}

export function panels(kind: string, ns: string, name: string): [string, string, PanelQuery[]][] {
  const r = "[1m]";
  if (kind === "mesh") {
    return [
      ["Global request volume", "rps", [q(`round(sum(irate(istio_requests_total{reporter="source"}${r})), 0.001)`, () => "requests")]],
      ["Global success rate (non-5xx)", "%", [q(`100 * sum(rate(istio_requests_total{reporter="source",response_code!~"5.*"}${r})) / sum(rate(istio_requests_total{reporter="source"}${r}))`, () => "success")]],
      ["4xx and 5xx", "rps", [q(`sum(rate(istio_requests_total{reporter="source",response_code=~"[45].*"}${r})) by (response_code)`, (m) => m.response_code)]],
      ["Requests by destination service", "rps", [q(`sum(rate(istio_requests_total{reporter="source"}${r})) by (destination_service)`, (m) => m.destination_service)]],
      ["P50 / P90 / P99 duration", "ms", [0.5, 0.9, 0.99].map((p) => q(`histogram_quantile(${p}, sum(rate(istio_request_duration_milliseconds_bucket{reporter="source"}${r})) by (le))`, () => `p${p * 100}`))],
      ["TCP bytes sent", "B/s", [q(`sum(rate(istio_tcp_sent_bytes_total{reporter="source"}${r})) by (destination_service)`, (m) => m.destination_service)]],
    ];
  }
  const [dst, src] =
    kind === "service"
      ? [`destination_service_name="${name}",destination_service_namespace="${ns}"`, ""]
      : [`destination_workload="${name}",destination_workload_namespace="${ns}"`, `source_workload="${name}",source_workload_namespace="${ns}"`];
  const out: [string, string, PanelQuery[]][] = [
    ["Incoming request volume", "rps", [q(`round(sum(irate(istio_requests_total{reporter="destination",${dst}}${r})), 0.001)`, () => "requests")]],
    ["Incoming success rate (non-5xx)", "%", [q(`100 * sum(rate(istio_requests_total{reporter="destination",${dst},response_code!~"5.*"}${r})) / sum(rate(istio_requests_total{reporter="destination",${dst}}${r}))`, () => "success")]],
    ["Request duration", "ms", [0.5, 0.9, 0.99].map((p) => q(`histogram_quantile(${p}, sum(rate(istio_request_duration_milliseconds_bucket{reporter="destination",${dst}}${r})) by (le))`, () => `p${p * 100}`))],
    ["Request size", "B", [0.5, 0.9, 0.99].map((p) => q(`histogram_quantile(${p}, sum(rate(istio_request_bytes_bucket{reporter="destination",${dst}}${r})) by (le))`, () => `p${p * 100}`))],
    ["Response size", "B", [0.5, 0.9, 0.99].map((p) => q(`histogram_quantile(${p}, sum(rate(istio_response_bytes_bucket{reporter="destination",${dst}}${r})) by (le))`, () => `p${p * 100}`))],
    ["Incoming requests by source and response code", "rps", [q(`round(sum(irate(istio_requests_total{reporter="destination",${dst}}${r})) by (source_workload, source_workload_namespace, response_code), 0.001)`, (m) => `${m.source_workload}.${m.source_workload_namespace} : ${m.response_code}`)]],
    ["TCP bytes received", "B/s", [q(`sum(rate(istio_tcp_received_bytes_total{reporter="destination",${dst}}${r})) by (source_workload)`, (m) => m.source_workload)]],
  ];
  if (src) {
    out.push(
      ["Outgoing requests by destination and response code", "rps", [q(`round(sum(irate(istio_requests_total{reporter="source",${src}}${r})) by (destination_service, response_code), 0.001)`, (m) => `${m.destination_service} : ${m.response_code}`)]],
      ["Outgoing TCP bytes sent", "B/s", [q(`sum(rate(istio_tcp_sent_bytes_total{reporter="source",${src}}${r})) by (destination_service)`, (m) => m.destination_service)]],
    );
  }
  return out;
}

export async function renderMetrics(root: HTMLElement, params: URLSearchParams): Promise<void> {
  clear(root);
  if (params.get("service")) { scope.kind = "service"; scope.name = params.get("service")!; }
  if (params.get("workload")) { scope.kind = "workload"; scope.name = params.get("workload")!; }
  const g = await get<Graph>("/api/graph", { graphType: "workload", duration: "1h" }).catch(() => null);
  const workloads = g ? g.nodes.filter((n) => n.nodeType === "workload").map((n) => `${n.namespace}/${n.workload}`) : [];
  const svcs = await get<{ items: { name: string; namespace: string }[] }>("/api/services").catch(() => ({ items: [] }));
  const services = svcs.items.map((s) => `${s.namespace}/${s.name}`);
  const grid = h("div", { class: "panels", id: "metric-panels" });
  const nameSel = h("span", {});
  const draw = () => {
    clear(grid);
    const [ns, name] = scope.name.split("/");
    if (scope.kind !== "mesh" && !name) { grid.textContent = "choose a " + scope.kind; return; }
    for (const [title, unit, queries] of panels(scope.kind, ns, name)) grid.appendChild(panel(title, unit, queries, scope.seconds).el);
  };
  const names = () => {
    clear(nameSel);
    if (scope.kind === "mesh") return;
    const options = scope.kind === "service" ? services : workloads;
    if (!options.includes(scope.name)) scope.name = options[0] ?? "";
    nameSel.appendChild(select("metric-name", scope.kind === "service" ? "Service" : "Workload", options.map((o): [string, string] => [o, o]), scope.name, (v) => { scope.name = v; draw(); }));
  };
  root.append(
    h(
      "div",
      { class: "toolbar" },
      select("metric-scope", "Dashboard", [["mesh", "Istio Mesh"], ["service", "Istio Service"], ["workload", "Istio Workload"]], scope.kind, (v) => { scope.kind = v; names(); draw(); }),
      nameSel,
      select("metric-range", "Last", [["300", "5m"], ["900", "15m"], ["3600", "1h"]], String(scope.seconds), (v) => { scope.seconds = Number(v); draw(); }),
    ),
    grid,
  );
  names();
  draw();
}
