// Turns a service name into an address to load, through the control plane's admin API
// and the sidecars' admin `/config`:
//
// - with `from`: the calling service's sidecar (the "testing pod"): its outbound
//   listener for the target service, or its HTTP proxy listener with `Host: <service>`,
//   so the load takes the same path the calling app's requests take (routes, splits,
//   faults and policies apply);
// - without: the service's public listener on the ingress gateway, for public services.
import { INGRESS_SERVICE } from '../api/protocol.js';
import { TrellisError } from '../errors.js';
import { adminHeaders } from '../security/admin-token.js';
import { isLoopbackHost } from './target.js';

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** Where a service target resolved to. */
export interface ResolvedTarget {
  /** The URL the load connects to (a sidecar or gateway listener on loopback). */
  readonly url: string;
  /** Headers the listener needs (`Host` for an HTTP proxy listener). */
  readonly headers: readonly (readonly [string, string])[];
  /** How the target is reached, for people: "backend via frontend's sidecar frontend-0". */
  readonly via: string;
}

export interface ResolveOptions {
  /** The control plane's admin URL, e.g. http://127.0.0.1:15000. */
  readonly control: string;
  readonly service: string;
  /** Path and query to request, starting with `/`. */
  readonly path: string;
  /** Send from inside the mesh, through this service's sidecar. */
  readonly from?: string;
  /** The admin API's token (src/security/admin-token.ts), sent with every request to the control plane. */
  readonly token?: string | undefined;
  /** Fetches JSON; tests may replace it. */
  readonly getJson?: (url: string) => Promise<unknown>;
}

/** The gateway `trellis up` starts for public services (src/runner/local-mesh.ts). */
export const INGRESS_PROXY = INGRESS_SERVICE;

const TIMEOUT_MS = 3000;

interface ServiceEntry {
  name: string;
  protocol?: string;
  public?: unknown;
  upstreams?: { service: string }[];
}
interface ProxyEntry {
  id: string;
  service: string;
  kind?: string;
  connected?: boolean;
  /** Not every control plane lists it; /v1/instances does for sidecars. */
  admin?: HostPort;
}
interface InstanceEntry {
  id: string;
  service: string;
  admin?: HostPort;
  health?: { status?: string };
}
interface ProxyConfig {
  addresses?: { upstreams?: Record<string, HostPort>; httpProxy?: HostPort; gateway?: Record<string, HostPort> };
  snapshot?: { gateway?: { ports?: { port: number; protocol: string; listeners?: string[] }[] } };
}

/** GETs JSON with a bounded wait; fails with TRELLIS_E_ADMIN_UNREACHABLE naming the URL and the reason. */
export async function fetchJson(url: string, token?: string): Promise<unknown> {
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(TIMEOUT_MS), headers: adminHeaders(token) });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    throw new TrellisError('TRELLIS_E_ADMIN_UNREACHABLE', { url, reason: cause?.code ?? cause?.message ?? (err instanceof Error ? err.message : String(err)) });
  }
  if (!res.ok) {
    await res.body?.cancel();
    throw new TrellisError('TRELLIS_E_ADMIN_UNREACHABLE', { url, reason: `answered ${res.status}` });
  }
  return res.json();
}

/**
 * Why a GET of an admin endpoint failed, without the URL, for messages that name the
 * endpoint their own way ("GET /v1/services: ECONNREFUSED").
 */
export function fetchFailure(err: unknown): string {
  if (err instanceof TrellisError && err.code === 'TRELLIS_E_ADMIN_UNREACHABLE') return String(err.params.reason);
  return err instanceof Error ? err.message : String(err);
}

function hostPort(v: unknown): HostPort | undefined {
  const hp = v as HostPort | undefined;
  return hp && typeof hp.host === 'string' && typeof hp.port === 'number' ? hp : undefined;
}

function urlOf(hp: HostPort, path: string): string {
  const host = hp.host === '0.0.0.0' ? '127.0.0.1' : hp.host === '::' ? '::1' : hp.host;
  return `http://${host.includes(':') ? `[${host}]` : host}:${hp.port}${path}`;
}

/** Resolves `service` to a listener to load; TRELLIS_E_USAGE when the names do not fit the mesh. */
export async function resolveServiceTarget(o: ResolveOptions): Promise<ResolvedTarget> {
  const getJson = o.getJson ?? ((url: string) => fetchJson(url, o.token));
  const control = o.control.replace(/\/+$/, '');
  const fromControl = async <T>(path: string): Promise<T> => {
    try {
      return (await getJson(`${control}${path}`)) as T;
    } catch (err) {
      throw new TrellisError('TRELLIS_E_CONTROL_UNREACHABLE', { url: control, reason: `GET ${path}: ${fetchFailure(err)}` });
    }
  };

  const { services } = await fromControl<{ services: ServiceEntry[] }>('/v1/services');
  const names = services.map((s) => s.name);
  const find = (name: string, role: string): ServiceEntry => {
    const s = services.find((x) => x.name === name);
    if (!s) {
      throw new TrellisError('TRELLIS_E_USAGE', {
        reason: `no service named "${name}"${role} in the mesh at ${control}; its services are: ${names.join(', ') || '(none)'}`,
      });
    }
    return s;
  };
  const svc = find(o.service, '');
  if (svc.protocol === 'tcp') {
    throw new TrellisError('TRELLIS_E_USAGE', { reason: `${o.service} is a TCP service; trellis load sends HTTP requests` });
  }

  const { proxies } = await fromControl<{ proxies: ProxyEntry[] }>('/v1/proxies');
  /** The admin address of a proxy: from /v1/proxies when listed there, else from /v1/instances. */
  const adminOf = async (p: ProxyEntry): Promise<HostPort | undefined> => {
    const listed = hostPort(p.admin);
    if (listed) return listed;
    if (p.kind === 'gateway') return undefined;
    const { instances } = await fromControl<{ instances: InstanceEntry[] }>('/v1/instances');
    return hostPort(instances.find((i) => i.id === p.id)?.admin);
  };
  const configOf = async (p: ProxyEntry, admin: HostPort): Promise<ProxyConfig> => {
    if (!isLoopbackHost(admin.host) && admin.host !== '0.0.0.0' && admin.host !== '::') {
      throw new TrellisError('TRELLIS_E_USAGE', {
        reason: `the proxy ${p.id} is not on this machine (admin ${admin.host}:${admin.port}); trellis load only sends load on loopback`,
      });
    }
    const url = urlOf(admin, '/config');
    try {
      return (await getJson(url)) as ProxyConfig;
    } catch (err) {
      throw new TrellisError('TRELLIS_E_NOT_FOUND', {
        reason: `cannot read the config of proxy ${p.id} at ${url}: ${fetchFailure(err)}; is it running? (\`trellis status\`)`,
      });
    }
  };

  if (o.from !== undefined) {
    const from = find(o.from, ' (--from)');
    // A sidecar reaches only its service's declared upstreams, through any of its listeners.
    const declared = from.upstreams ?? [];
    if (!declared.some((u) => u.service === o.service)) {
      throw new TrellisError('TRELLIS_E_USAGE', {
        reason:
          `${o.from} does not call ${o.service} (it is not in ${o.from}'s upstreams), so ${o.from}'s sidecar has no route to it; ` +
          `pick a --from service that calls ${o.service}${callers(services, o.service)}, or add ${o.service} to ${o.from}'s upstreams in the mesh file`,
      });
    }
    const candidates = proxies
      .filter((p) => p.service === o.from && (p.kind ?? 'sidecar') === 'sidecar')
      .sort((a, b) => Number(b.connected ?? true) - Number(a.connected ?? true) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    const sidecar = candidates[0];
    if (!sidecar) {
      throw new TrellisError('TRELLIS_E_NOT_FOUND', { reason: `${o.from} has no running sidecar at ${control}; is the mesh up? (\`trellis status\`)` });
    }
    const admin = await adminOf(sidecar);
    if (!admin) {
      throw new TrellisError('TRELLIS_E_NOT_FOUND', { reason: `the control plane at ${control} does not tell where the admin port of ${sidecar.id} is` });
    }
    const cfg = await configOf(sidecar, admin);
    const listener = hostPort(cfg.addresses?.upstreams?.[o.service]);
    if (listener) {
      return {
        url: urlOf(listener, o.path),
        headers: [],
        via: `${o.service} via ${o.from}'s sidecar ${sidecar.id}, outbound listener ${listener.host}:${listener.port}`,
      };
    }
    const httpProxy = hostPort(cfg.addresses?.httpProxy);
    if (httpProxy) {
      return {
        url: urlOf(httpProxy, o.path),
        headers: [['Host', o.service]],
        via: `${o.service} via ${o.from}'s sidecar ${sidecar.id}, HTTP proxy listener ${httpProxy.host}:${httpProxy.port}`,
      };
    }
    throw new TrellisError('TRELLIS_E_NOT_FOUND', { reason: `${sidecar.id} has no listener for ${o.service} (no upstream listener, no HTTP proxy listener)` });
  }

  if (!svc.public) {
    throw new TrellisError('TRELLIS_E_USAGE', {
      reason: `${o.service} is not public, so it can only be reached from inside the mesh: add --from SERVICE to send the load through the sidecar of a service that calls it${callers(services, o.service)}`,
    });
  }
  const ingress = proxies.find((p) => p.id === INGRESS_PROXY || (p.kind === 'gateway' && p.service === INGRESS_PROXY));
  if (!ingress) {
    throw new TrellisError('TRELLIS_E_NOT_FOUND', {
      reason: `${o.service} is public but no ingress proxy (${INGRESS_PROXY}) is connected to ${control}; is the mesh up? (\`trellis status\`)`,
    });
  }
  const admin = await adminOf(ingress);
  if (!admin) {
    throw new TrellisError('TRELLIS_E_NOT_FOUND', {
      reason: `the control plane at ${control} does not tell where the admin port of ${INGRESS_PROXY} is; give the public URL \`trellis up\` printed instead (e.g. trellis load http://127.0.0.1:8080/), or use --from`,
    });
  }
  const cfg = await configOf(ingress, admin);
  const listener = hostPort(cfg.addresses?.upstreams?.[o.service]) ?? derivedListener(cfg, o.service);
  if (!listener) {
    throw new TrellisError('TRELLIS_E_NOT_FOUND', { reason: `${INGRESS_PROXY} has no public listener for ${o.service}` });
  }
  return { url: urlOf(listener, o.path), headers: [], via: `${o.service}'s public listener on ${INGRESS_PROXY}` };
}

/**
 * The port of the ingress Gateway `trellis up` derives from public services whose listener
 * is the service's (src/runner/gateways.ts: the service key, dots made dashes).
 */
function derivedListener(cfg: ProxyConfig, service: string): HostPort | undefined {
  const name = service.replace(/\./g, '-');
  const port = cfg.snapshot?.gateway?.ports?.find((p) => p.protocol === 'HTTP' && p.listeners?.includes(name))?.port;
  return port === undefined ? undefined : hostPort(cfg.addresses?.gateway?.[String(port)]);
}

/** ` (services that call X: a, b)`, or nothing. */
function callers(services: ServiceEntry[], service: string): string {
  const names = services.filter((s) => (s.upstreams ?? []).some((u) => u.service === service)).map((s) => s.name);
  return names.length > 0 ? ` (services that call ${service}: ${names.join(', ')})` : '';
}
