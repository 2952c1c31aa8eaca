// Calls to the dashboard's server; a 401 means the session is gone: show the sign-in form.
export class ApiError extends Error {
  constructor(public status: number, message: string) {
    super(message);
  }
}

let onUnauthorized: () => void = () => {};
export function setUnauthorizedHandler(f: () => void): void {
  onUnauthorized = f;
}

async function decode<T>(resp: Response): Promise<T> {
  const text = await resp.text();
  let body: unknown = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = text;
  }
  if (resp.status === 401) onUnauthorized();
  if (!resp.ok) {
    const msg =
      body && typeof body === "object" && "error" in body
        ? String((body as { error: unknown }).error)
        : `HTTP ${resp.status}`;
    throw new ApiError(resp.status, msg);
  }
  return body as T;
}

export async function get<T>(path: string, params: Record<string, string> = {}): Promise<T> {
  const qs = new URLSearchParams(params).toString();
  const resp = await fetch(qs ? `${path}?${qs}` : path, { credentials: "same-origin" });
  return decode<T>(resp);
}

export async function post<T>(path: string, body: unknown): Promise<{ status: number; body: T }> {
  const resp = await fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const text = await resp.text();
  if (resp.status === 401) onUnauthorized();
  return { status: resp.status, body: (text ? JSON.parse(text) : null) as T };
}

export interface PromSeries {
  metric: Record<string, string>;
  values: [number, string][];
}

export async function queryRange(query: string, seconds: number, step?: number): Promise<PromSeries[]> {
  const end = Math.floor(Date.now() / 1000);
  const start = end - seconds;
  const s = step ?? Math.max(5, Math.floor(seconds / 120));
  const body = await get<{ data: { result: PromSeries[] } }>("/api/prometheus/query_range", {
    query,
    start: String(start),
    end: String(end),
    step: String(s),
  });
  return body.data.result;
}
