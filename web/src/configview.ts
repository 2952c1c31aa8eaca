// The Config page: every resource with its analyzer messages, each proxy's sync state, and a
// proxy's generated Envoy config as tables.
import { get } from "./api";
import { Child, clear, h, table } from "./dom";

interface Message {
  code: string;
  level: string;
  message: string;
  field: string | null;
  documentationUrl?: string;
}

interface Resource {
  kind: string;
  namespace: string;
  name: string;
  messages: Message[];
  body: unknown;
}

function messages(ms: Message[]): HTMLElement {
  if (!ms.length) return h("span", { class: "ok" }, "✓ no problems");
  return h(
    "ul",
    { class: "messages" },
    ...ms.map((m) =>
      h(
        "li",
        { class: `msg ${m.level.toLowerCase()}` },
        h("a", { href: m.documentationUrl ?? "#", target: "_blank", rel: "noreferrer" }, `${m.level} [${m.code}]`),
        ` ${m.message}`,
        m.field ? h("code", {}, ` (${m.field})`) : null,
      ),
    ),
  );
}

export function configList(items: Resource[]): HTMLElement {
  if (!items.length) return h("p", {}, "No Istio config applies.");
  return h(
    "ul",
    { class: "config-list" },
    ...items.map((r) =>
      h(
        "li",
        { "data-kind": r.kind, "data-name": `${r.namespace}/${r.name}` },
        h("details", {}, h("summary", {}, `${r.kind} ${r.namespace}/${r.name} `, messages(r.messages)), h("pre", {}, JSON.stringify(r.body, null, 2))),
      ),
    ),
  );
}

interface ProxyStatus {
  pod_name: string;
  namespace: string;
  proxy_type: string;
  synced: boolean;
  config_revision?: number | null;
  types: Record<string, { state: string; last_nack?: { message?: string } | null }>;
}

const XDS_TYPES = ["CDS", "LDS", "EDS", "RDS", "SDS"];

export async function renderConfig(root: HTMLElement): Promise<void> {
  clear(root);
  const resources = h("section", { id: "config-resources" }, "loading...");
  const proxies = h("section", { id: "config-proxies" }, "loading...");
  const envoy = h("section", { id: "config-envoy" });
  root.append(h("h2", {}, "Resources and analyzer messages"), resources, h("h2", {}, "Proxies (sync state)"), proxies, envoy);
  try {
    const r = await get<{ items: Resource[] }>("/api/config");
    const problems = r.items.reduce((n, x) => n + x.messages.length, 0);
    clear(resources).append(
      h("p", {}, `${r.items.length} resources, ${problems} analyzer messages`),
      table(
        ["Kind", "Namespace", "Name", "Analyzer messages", "Spec"],
        r.items.map((x) => [x.kind, x.namespace, x.name, messages(x.messages), h("details", {}, h("summary", {}, "show"), h("pre", {}, JSON.stringify(x.body, null, 2)))]),
        { class: "list", id: "resources-table" },
      ),
    );
  } catch (e) {
    resources.textContent = (e as Error).message;
  }
  try {
    const p = await get<{ items: ProxyStatus[] }>("/api/proxies");
    clear(proxies).append(
      table(
        ["Proxy", "Type", ...XDS_TYPES, "Synced", "Config revision", "Envoy config"],
        p.items.map((x) => {
          const cells: Child[] = [`${x.pod_name}.${x.namespace}`, x.proxy_type];
          for (const t of XDS_TYPES) {
            const st = x.types?.[t];
            cells.push(st ? h("span", { class: st.state === "SYNCED" ? "ok" : "msg error", title: st.last_nack?.message ?? "" }, st.state) : "NOT SENT");
          }
          cells.push(x.synced ? "yes" : "no", String(x.config_revision ?? "-"), h("button", { onclick: () => void showEnvoy(envoy, x.namespace, x.pod_name) }, "show"));
          return cells;
        }),
        { class: "list", id: "proxies-table" },
      ),
    );
  } catch (e) {
    proxies.textContent = (e as Error).message;
  }
}

async function showEnvoy(el: HTMLElement, ns: string, name: string): Promise<void> {
  clear(el).append(h("h2", {}, `Envoy config of ${name}.${ns}`), "loading...");
  try {
    const t = await get<Record<string, Record<string, unknown>[]>>(`/api/proxies/${encodeURIComponent(ns)}/${encodeURIComponent(name)}/config`);
    clear(el).append(h("h2", {}, `Envoy config of ${name}.${ns} (as the control plane generates it)`));
    for (const [kind, rows] of Object.entries(t)) {
      const cols = rows.length ? Object.keys(rows[0]) : [];
      el.append(h("h3", {}, `${kind} (${rows.length})`), table(cols, rows.map((r) => cols.map((c) => String(r[c] ?? ""))), { class: "list" }));
    }
  } catch (e) {
    el.append((e as Error).message);
  }
}
