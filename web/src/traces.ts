// The Traces page: search (service, operation, tags, min/max duration, lookback, limit), a
// result list, and a waterfall with each span's tags. Data: the Jaeger query API.
import { get } from "./api";
import { clear, fmt, h } from "./dom";

interface Span {
  traceID: string;
  spanID: string;
  operationName: string;
  references: { refType: string; spanID: string }[];
  startTime: number;
  duration: number;
  tags: { key: string; value: unknown }[];
  processID: string;
}

interface Trace {
  traceID: string;
  spans: Span[];
  processes: Record<string, { serviceName: string }>;
}

const isError = (s: Span) =>
  s.tags.some((t) => (t.key === "error" && String(t.value) === "true") || (t.key === "http.status_code" && Number(t.value) >= 500));

export function summary(t: Trace): { root: Span; duration: number; services: string[]; errors: number } {
  const start = Math.min(...t.spans.map((s) => s.startTime));
  const end = Math.max(...t.spans.map((s) => s.startTime + s.duration));
  const ids = new Set(t.spans.map((s) => s.spanID));
  const root = t.spans.find((s) => !s.references.some((r) => ids.has(r.spanID))) ?? t.spans[0];
  const services = [...new Set(t.spans.map((s) => t.processes[s.processID]?.serviceName ?? "?"))].sort();
  return { root, duration: end - start, services, errors: t.spans.filter(isError).length };
}

function ordered(t: Trace): { span: Span; depth: number }[] {
  const children = new Map<string, Span[]>();
  const ids = new Set(t.spans.map((s) => s.spanID));
  const roots: Span[] = [];
  for (const s of t.spans) {
    const parent = s.references.find((r) => ids.has(r.spanID));
    if (parent) {
      const list = children.get(parent.spanID) ?? [];
      list.push(s);
      children.set(parent.spanID, list);
    } else roots.push(s);
  }
  const out: { span: Span; depth: number }[] = [];
  const walk = (s: Span, depth: number) => {
    out.push({ span: s, depth });
    for (const c of (children.get(s.spanID) ?? []).sort((a, b) => a.startTime - b.startTime)) walk(c, depth + 1);
  };
  for (const r of roots.sort((a, b) => a.startTime - b.startTime)) walk(r, 0);
  return out;
}

function waterfall(el: HTMLElement, t: Trace): void {
  const s = summary(t);
  const start = Math.min(...t.spans.map((x) => x.startTime));
  const total = Math.max(1, s.duration);
  const tags = h("div", { class: "span-tags", id: "span-tags" }, "click a span to see its tags");
  const rows = ordered(t).map(({ span, depth }) => {
    const left = (100 * (span.startTime - start)) / total;
    const width = Math.max(0.3, (100 * span.duration) / total);
    const service = t.processes[span.processID]?.serviceName ?? "?";
    return h(
      "div",
      {
        class: isError(span) ? "span-row error" : "span-row",
        "data-span": span.spanID,
        tabindex: 0,
        onclick: () => {
          clear(tags).append(
            h("h3", {}, `${service}: ${span.operationName}`),
            h("table", { class: "list" }, h("tbody", {}, ...span.tags.map((x) => h("tr", {}, h("th", {}, x.key), h("td", {}, String(x.value)))))),
          );
        },
      },
      h("span", { class: "span-name", style: `padding-left:${depth * 14}px` }, `${service} `, h("small", {}, span.operationName)),
      h("span", { class: "span-track" }, h("span", { class: "span-bar", style: `left:${left}%;width:${width}%` }), h("span", { class: "span-ms", style: `left:${Math.min(left + width, 85)}%` }, `${fmt(span.duration / 1000, 2)} ms`)),
    );
  });
  clear(el).append(
    h("h2", {}, `Trace ${t.traceID}`),
    h("p", {}, `${fmt(s.duration / 1000, 2)} ms · ${t.spans.length} spans · ${s.services.length} services: ${s.services.join(", ")}`),
    h("div", { class: "waterfall", id: "waterfall" }, ...rows),
    tags,
  );
}

export async function renderTraces(root: HTMLElement, params: URLSearchParams): Promise<void> {
  clear(root);
  const services = await get<{ data: string[] | null }>("/api/jaeger/services").catch(() => ({ data: [] as string[] }));
  const wanted = params.get("service") ?? "";
  const svc = h("select", { id: "trace-service", name: "service" });
  for (const name of services.data ?? []) {
    const o = h("option", { value: name }, name);
    if (name === wanted) o.selected = true;
    svc.appendChild(o);
  }
  const op = h("select", { id: "trace-operation" }, h("option", { value: "" }, "all"));
  const loadOps = async () => {
    clear(op).appendChild(h("option", { value: "" }, "all"));
    if (!svc.value) return;
    const ops = await get<{ data: string[] | null }>(`/api/jaeger/services/${encodeURIComponent(svc.value)}/operations`).catch(() => ({ data: [] as string[] }));
    for (const o of ops.data ?? []) op.appendChild(h("option", { value: o }, o));
  };
  svc.addEventListener("change", () => void loadOps());
  const tags = h("input", { id: "trace-tags", placeholder: "http.status_code=500 error=true", size: 28 });
  const minD = h("input", { id: "trace-min", placeholder: "e.g. 10ms", size: 7 });
  const maxD = h("input", { id: "trace-max", placeholder: "e.g. 2s", size: 7 });
  const lookback = h("select", { id: "trace-lookback" }, ...["5m", "15m", "1h", "6h", "24h"].map((v) => h("option", { value: v, selected: v === "1h" }, v)));
  const limit = h("input", { id: "trace-limit", value: "20", size: 4, type: "number", min: 1, max: 500 });
  const results = h("section", { id: "trace-results" });
  const detail = h("section", { id: "trace-detail" });
  const search = async () => {
    const p: Record<string, string> = { service: svc.value, lookback: lookback.value, limit: limit.value || "20" };
    if (op.value) p.operation = op.value;
    if (minD.value.trim()) p.minDuration = minD.value.trim();
    if (maxD.value.trim()) p.maxDuration = maxD.value.trim();
    const tagPairs = tags.value.trim().split(/\s+/).filter(Boolean).map((x) => x.split("="));
    if (tagPairs.length) p.tags = JSON.stringify(Object.fromEntries(tagPairs.map(([k, ...v]) => [k, v.join("=")])));
    results.textContent = "searching...";
    try {
      const r = await get<{ data: Trace[] | null }>("/api/jaeger/traces", p);
      const traces = (r.data ?? []).slice().sort((a, b) => summary(b).services.length - summary(a).services.length || summary(b).root.startTime - summary(a).root.startTime);
      clear(results).append(h("p", {}, `${traces.length} traces`));
      const tbl = h("table", { class: "list", id: "traces-table" }, h("thead", {}, h("tr", {}, ...["Trace", "Root", "Duration (ms)", "Spans", "Services", "Errors", "Started"].map((x) => h("th", { scope: "col" }, x)))));
      const body = h("tbody", {});
      for (const t of traces) {
        const s = summary(t);
        body.appendChild(
          h(
            "tr",
            { "data-trace": t.traceID, "data-services": String(s.services.length), class: s.errors ? "error" : "" },
            h("td", {}, h("a", { href: "#", onclick: (e: Event) => { e.preventDefault(); waterfall(detail, t); } }, t.traceID.slice(0, 12))),
            h("td", {}, `${t.processes[s.root.processID]?.serviceName}: ${s.root.operationName}`),
            h("td", {}, fmt(s.duration / 1000, 2)),
            h("td", {}, String(t.spans.length)),
            h("td", {}, `${s.services.length}: ${s.services.join(", ")}`),
            h("td", {}, String(s.errors)),
            h("td", {}, new Date(s.root.startTime / 1000).toLocaleTimeString()),
          ),
        );
      }
      tbl.appendChild(body);
      results.appendChild(tbl);
    } catch (e) {
      results.textContent = (e as Error).message;
    }
  };
  root.append(
    h(
      "form",
      { class: "toolbar", id: "trace-search", onsubmit: (e: Event) => { e.preventDefault(); void search(); } },
      h("label", { class: "field" }, "Service ", svc),
      h("label", { class: "field" }, "Operation ", op),
      h("label", { class: "field" }, "Tags ", tags),
      h("label", { class: "field" }, "Min ", minD),
      h("label", { class: "field" }, "Max ", maxD),
      h("label", { class: "field" }, "Lookback ", lookback),
      h("label", { class: "field" }, "Limit ", limit),
      h("button", { type: "submit", id: "trace-find" }, "Find traces"),
    ),
    results,
    detail,
  );
  await loadOps();
  if (svc.value) await search();
}
