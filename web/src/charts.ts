// Time-series panels: a PromQL range query drawn with uPlot.
import uPlot from "uplot";
import { queryRange, PromSeries } from "./api";
import { h } from "./dom";

const COLORS = ["#0066cc", "#3f9c35", "#ec7a08", "#cc0000", "#8461c9", "#009596", "#6a6e73"];

export interface PanelQuery {
  query: string;
  legend: (m: Record<string, string>) => string;
}

export function seriesToData(series: PromSeries[]): uPlot.AlignedData {
  const times = new Set<number>();
  for (const s of series) for (const [t] of s.values) times.add(t);
  const xs = [...times].sort((a, b) => a - b);
  const index = new Map(xs.map((t, i) => [t, i]));
  const ys = series.map((s) => {
    const col: (number | null)[] = new Array(xs.length).fill(null);
    for (const [t, v] of s.values) {
      const n = Number(v);
      col[index.get(t)!] = Number.isFinite(n) ? n : null;
    }
    return col;
  });
  return [xs, ...ys] as uPlot.AlignedData;
}

// Draws a panel into a new element; resolves with the number of points drawn.
export function panel(
  title: string,
  unit: string,
  queries: PanelQuery[],
  seconds: number,
): { el: HTMLElement; loaded: Promise<number> } {
  const body = h("div", { class: "chart-body" }, "loading...");
  const el = h("section", { class: "panel", "data-title": title }, h("h3", {}, title), body);
  const loaded = (async () => {
    const all: PromSeries[] = [];
    const labels: string[] = [];
    for (const q of queries) {
      try {
        const result = await queryRange(q.query, seconds);
        for (const s of result) {
          all.push(s);
          labels.push(q.legend(s.metric));
        }
      } catch (e) {
        body.textContent = `error: ${(e as Error).message}`;
        el.dataset.points = "0";
        return 0;
      }
    }
    body.textContent = "";
    const points = all.reduce((n, s) => n + s.values.length, 0);
    el.dataset.points = String(points);
    if (!all.length) {
      body.textContent = "no data in this time range";
      return 0;
    }
    const end = Math.floor(Date.now() / 1000);
    const opts: uPlot.Options = {
      scales: { x: { time: true, range: () => [end - seconds, end] } },
      width: Math.max(280, (el.clientWidth || 420) - 16),
      height: 180,
      series: [
        {},
        ...labels.map((label, i) => ({
          label,
          stroke: COLORS[i % COLORS.length],
          width: 1.5,
          value: (_u: uPlot, v: number | null) => (v === null ? "-" : `${v.toFixed(2)} ${unit}`),
        })),
      ],
      axes: [{}, { size: 60, values: (_u: uPlot, vals: number[]) => vals.map((v) => `${+v.toFixed(2)}`) }],
      legend: { show: true },
    };
    new uPlot(opts, seriesToData(all), body);
    return points;
  })();
  return { el, loaded };
}
