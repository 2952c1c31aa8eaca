// The Wizards page: traffic shifting, fault injection, timeouts and retries for a service.
// Each shows the Istio YAML, applies it server-side with dryRun first, then for real.
import { get, post } from "./api";
import { clear, h, select } from "./dom";

interface Service {
  name: string;
  namespace: string;
  subsets: string[];
  versions: string[];
}

interface WizardAnswer {
  yaml?: string;
  error?: string;
  dryRun?: { ok: boolean; result: { message?: string } };
  applied?: { ok: boolean; result: { message?: string; revision?: number } };
}

export async function renderWizards(root: HTMLElement, params: URLSearchParams): Promise<void> {
  clear(root);
  const svcs = (await get<{ items: Service[] }>("/api/services")).items.filter((s) => s.namespace !== "istio-system");
  let current: Service | undefined = svcs.find((s) => `${s.namespace}/${s.name}` === params.get("service")) ?? svcs[0];
  let wizard = params.get("wizard") ?? "traffic-shifting";
  const form = h("div", { id: "wizard-form" });
  const yaml = h("pre", { id: "wizard-yaml", class: "yaml" });
  const result = h("div", { id: "wizard-result", "aria-live": "polite" });
  const inputs = new Map<string, HTMLInputElement>();

  const field = (key: string, label: string, value: string, type = "number") => {
    const input = h("input", { id: `wz-${key}`, name: key, value, type, size: 6 });
    inputs.set(key, input);
    return h("label", { class: "field" }, `${label} `, input);
  };
  const spec = (): Record<string, unknown> => {
    if (wizard === "traffic-shifting") {
      const weights: Record<string, number> = {};
      for (const [k, i] of inputs) if (k.startsWith("w:")) weights[k.slice(2)] = Number(i.value || 0);
      return { weights };
    }
    const out: Record<string, unknown> = {};
    for (const [k, i] of inputs) out[k] = i.type === "number" ? Number(i.value || 0) : i.value;
    return out;
  };
  const call = async (mode: string) => {
    if (!current) return;
    const r = await post<WizardAnswer>(`/api/wizards/${wizard}`, { service: current.name, namespace: current.namespace, spec: spec(), mode });
    const a = r.body;
    if (a.yaml) yaml.textContent = a.yaml;
    clear(result);
    if (a.error) result.append(h("p", { class: "msg error" }, a.error));
    if (a.dryRun) result.append(h("p", { class: a.dryRun.ok ? "msg ok" : "msg error", id: "wizard-dryrun" }, a.dryRun.ok ? "Server-side dry run: accepted." : `Server-side dry run refused: ${a.dryRun.result.message}`));
    if (a.applied) result.append(h("p", { class: a.applied.ok ? "msg ok" : "msg error", id: "wizard-applied" }, a.applied.ok ? `Applied (revision ${a.applied.result.revision}). The graph shows the effect within a refresh or two.` : `Not applied: ${a.applied.result.message}`));
  };
  const draw = () => {
    clear(form);
    inputs.clear();
    if (!current) { form.textContent = "no services"; return; }
    if (wizard === "traffic-shifting") {
      const names = current.subsets.length ? current.subsets : current.versions;
      const even = Math.floor(100 / Math.max(1, names.length));
      names.forEach((n, i) => form.appendChild(field(`w:${n}`, `weight of ${n} (%)`, String(i === 0 ? 100 - even * (names.length - 1) : even))));
      if (!names.length) form.append("this service has no subsets or versions to shift between");
    } else if (wizard === "fault-injection") {
      form.append(field("abortPercent", "abort %", "100"), field("abortStatus", "HTTP status", "503"), field("delayPercent", "delay %", "0"), field("delayMs", "delay (ms)", "1000"));
    } else {
      form.append(field("timeoutSeconds", "timeout (s)", "2"), field("attempts", "retry attempts", "3"), field("perTryTimeoutSeconds", "per try timeout (s)", "1"), field("retryOn", "retry on", "5xx,reset,connect-failure", "text"));
    }
    form.append(
      h("div", { class: "buttons" },
        h("button", { id: "wizard-preview", onclick: () => void call("preview") }, "Show YAML"),
        h("button", { id: "wizard-dry-run", onclick: () => void call("dryRun") }, "Dry run"),
        h("button", { id: "wizard-apply", class: "primary", onclick: () => void call("apply") }, "Apply (dry run first)"),
      ),
    );
    void call("preview");
  };
  root.append(
    h("div", { class: "toolbar" },
      select("wizard-kind", "Wizard", [["traffic-shifting", "Traffic shifting"], ["fault-injection", "Fault injection"], ["request-timeouts", "Timeouts and retries"]], wizard, (v) => { wizard = v; draw(); }),
      select("wizard-service", "Service", svcs.map((s): [string, string] => [`${s.namespace}/${s.name}`, `${s.namespace}/${s.name}`]), current ? `${current.namespace}/${current.name}` : "", (v) => { current = svcs.find((s) => `${s.namespace}/${s.name}` === v); draw(); }),
    ),
    form,
    h("h3", {}, "The Istio YAML it applies"),
    yaml,
    result,
  );
  draw();
}
