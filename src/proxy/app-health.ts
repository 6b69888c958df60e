// The sidecar's /app-health/<container>/<kind>: the kubelet's HTTP probes of an injected
// pod's app, made by the sidecar instead (src/k8s/inject.ts rewrites them to here). Under
// STRICT mTLS a kubelet's plain-text probe to an app port would be redirected to the
// inbound listener and refused; the sidecar runs as uid 1337, so its own call to the app
// on 127.0.0.1 is not redirected (Istio's pilot-agent does the same on :15020).
// The probes come from the pod spec (TRELLIS_APP_PROBES, set by the injector), never from
// the request: a caller can only pick one of them by path, not aim the sidecar elsewhere.
import http from 'node:http';
import https from 'node:https';

/** The env var that carries the app's original HTTP probes to the sidecar (JSON: path → probe). */
export const APP_PROBES_ENV = 'TRELLIS_APP_PROBES';

/** The path prefix the injector rewrites probes to. */
export const APP_HEALTH_PREFIX = '/app-health/';

export interface AppProbe {
  readonly port: number;
  readonly path: string;
  readonly scheme: 'HTTP' | 'HTTPS';
  readonly headers: Readonly<Record<string, string>>;
}

/** At most this many probes are read (three per container); more is not a pod spec. */
const MAX_PROBES = 64;

/**
 * Probes of the app in flight at once, by default (`--app-probe-concurrency`). The
 * kubelet sends one probe per container and kind at a time, a few at most; each request
 * to /app-health is a request to the app that may wait its 5 s timeout, so a flood of
 * them (the path is open to the node's network: admin-access.ts) would become a flood
 * on the app and a pile of sockets in the sidecar. Over the cap: 503 at once.
 */
export const DEFAULT_APP_PROBE_CONCURRENCY = 16;

/** Caps the app probes in flight; counts what it turned away (trellis_proxy_app_probes_refused_total). */
export class AppProbeGate {
  readonly limit: number;
  #active = 0;
  #refused = 0;

  constructor(limit = DEFAULT_APP_PROBE_CONCURRENCY) {
    this.limit = Math.max(1, Math.floor(limit));
  }

  /** Runs `probe` when under the cap; undefined (counted) when `limit` probes are in flight already. */
  run(probe: () => Promise<number>): Promise<number> | undefined {
    if (this.#active >= this.limit) {
      this.#refused++;
      return undefined;
    }
    this.#active++;
    return probe().finally(() => this.#active--);
  }

  counts(): { active: number; refused: number } {
    return { active: this.#active, refused: this.#refused };
  }
}

/** The probes from TRELLIS_APP_PROBES (JSON: path → { httpGet }); entries that do not check out are dropped. */
export function parseAppProbes(text: string | undefined): ReadonlyMap<string, AppProbe> {
  const probes = new Map<string, AppProbe>();
  if (!text) return probes;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return probes;
  }
  if (typeof parsed !== 'object' || parsed === null) return probes;
  for (const [key, value] of Object.entries(parsed).slice(0, MAX_PROBES)) {
    const get = (value as { httpGet?: Record<string, unknown> } | null)?.httpGet;
    if (!key.startsWith(APP_HEALTH_PREFIX) || typeof get !== 'object' || get === null) continue;
    const port = get.port;
    const path = typeof get.path === 'string' && get.path.startsWith('/') ? get.path : '/';
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) continue;
    const headers: Record<string, string> = {};
    if (Array.isArray(get.httpHeaders)) {
      for (const h of get.httpHeaders) if (typeof h?.name === 'string' && typeof h?.value === 'string') headers[h.name] = h.value;
    }
    probes.set(key, { port, path, scheme: get.scheme === 'HTTPS' ? 'HTTPS' : 'HTTP', headers });
  }
  return probes;
}

/**
 * Runs one probe against the app on 127.0.0.1: the app's status when it answered
 * (the kubelet counts 200-399 as success), 503 when it did not in `timeoutMs`.
 */
export function runAppProbe(probe: AppProbe, timeoutMs = 5_000): Promise<number> {
  return new Promise((resolve) => {
    const options = {
      host: '127.0.0.1',
      port: probe.port,
      path: probe.path,
      headers: { 'user-agent': 'kube-probe/trellis', ...probe.headers },
      timeout: timeoutMs,
    };
    const done = (status: number) => resolve(status);
    // As the kubelet, an HTTPS probe does not verify the app's certificate.
    const req =
      probe.scheme === 'HTTPS' ? https.get({ ...options, rejectUnauthorized: false }, (res) => answered(res)) : http.get(options, (res) => answered(res));
    function answered(res: http.IncomingMessage): void {
      res.resume();
      done(res.statusCode ?? 503);
    }
    req.on('timeout', () => req.destroy());
    req.on('error', () => done(503));
  });
}
