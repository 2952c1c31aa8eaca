// The dashboard: sign-in, navigation between pages (#graph, #metrics, #traces, #config,
// #wizards), each page a module.
import "uplot/dist/uPlot.min.css";
import "./app.css";
import { get, setUnauthorizedHandler } from "./api";
import { clear, h } from "./dom";
import { renderGraph, stopGraph } from "./graph";
import { renderMetrics } from "./metrics";
import { renderTraces } from "./traces";
import { renderConfig } from "./configview";
import { renderWizards } from "./wizards";

const PAGES: [string, string][] = [
  ["graph", "Graph"],
  ["metrics", "Metrics"],
  ["traces", "Traces"],
  ["config", "Config"],
  ["wizards", "Wizards"],
];

const main = document.getElementById("main") as HTMLElement;
const nav = document.getElementById("nav") as HTMLElement;

function showLogin(message = ""): void {
  stopGraph();
  clear(nav);
  clear(main).append(
    h(
      "form",
      { method: "post", action: "/login", class: "login", id: "login" },
      h("h2", {}, "Sign in to the Pilotfish dashboard"),
      h("p", {}, "Paste the control plane's admin token (", h("code", {}, "<data-dir>/admin-token"), "), or run ", h("code", {}, "pilotfish dashboard"), " to open a signed-in link."),
      h("label", { for: "token" }, "Admin token"),
      h("input", { id: "token", name: "token", type: "password", autocomplete: "current-password", required: true }),
      h("button", { type: "submit" }, "Sign in"),
      message ? h("p", { class: "msg error" }, message) : null,
    ),
  );
}

async function route(): Promise<void> {
  const [page, query] = (location.hash.slice(1) || "graph").split("?");
  const params = new URLSearchParams(query ?? "");
  clear(nav).append(
    ...PAGES.map(([id, label]) => h("a", { href: `#${id}`, class: id === page ? "active" : "", "aria-current": id === page ? "page" : undefined }, label)),
    h("form", { method: "post", action: "/logout", class: "logout" }, h("button", { type: "submit" }, "Sign out")),
  );
  if (page !== "graph") stopGraph();
  main.dataset.page = page;
  try {
    switch (page) {
      case "metrics": await renderMetrics(main, params); break;
      case "traces": await renderTraces(main, params); break;
      case "config": await renderConfig(main); break;
      case "wizards": await renderWizards(main, params); break;
      default: await renderGraph(main);
    }
  } catch (e) {
    main.append(h("p", { class: "msg error" }, (e as Error).message));
  }
}

async function start(): Promise<void> {
  setUnauthorizedHandler(() => showLogin("Your session ended: sign in again."));
  const session = await get<{ signedIn: boolean }>("/api/session").catch(() => ({ signedIn: false }));
  if (!session.signedIn) {
    showLogin();
    return;
  }
  window.addEventListener("hashchange", () => void route());
  await route();
}

void start();
