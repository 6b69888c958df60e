// Test helper: a real sidecar pair (outbound → inbound → app) configured directly with
// a snapshot, without a control plane, so data-plane tests exercise only the data plane.
import http from 'node:http';
import net from 'node:net';
import type { MtlsMode, Protocol, Snapshot, UpstreamSnapshot } from '../../src/api/protocol.js';
import { Sidecar, type SidecarOptions } from '../../src/proxy/sidecar.js';
import { giveIdentity, registerInbound, withPeerMtls } from './test-identity.js';

export const quietLog = (): void => {};

export async function listenHttp(handler: http.RequestListener): Promise<{ server: http.Server; port: number }> {
  const server = http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as net.AddressInfo).port };
}

export async function closeServer(server: net.Server | http.Server): Promise<void> {
  if ('closeAllConnections' in server) server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
}

/** Control URL that refuses connections: the proxy retries quietly in the background. */
export const NO_CONTROL = 'http://127.0.0.1:1';

/**
 * An inbound sidecar for `service`, with a certificate from the test CA. `meshServices`
 * are the callers it accepts as a request's source (the snapshot's list); by default
 * `web`, the calling service of most tests. `mtls`: its inbound mode; by default
 * PERMISSIVE, so the helpers' outbound sidecars reach it over mutual TLS and a test may
 * still poke its listener with a plaintext client (parsers, limits, fuzzers).
 */
export async function startInbound(
  service: string,
  version: string,
  appPort: number,
  protocol: Protocol = 'http',
  opts: { detectTimeoutMs?: number; meshServices?: string[]; mtls?: MtlsMode; sidecar?: Partial<SidecarOptions> } = {},
): Promise<Sidecar> {
  const s = new Sidecar({
    service,
    version,
    id: `${service}-${version}-in`,
    kind: 'sidecar',
    control: NO_CONTROL,
    detectTimeoutMs: opts.detectTimeoutMs,
    app: { host: '127.0.0.1', port: appPort },
    inbound: { host: '127.0.0.1', port: 0 },
    upstreams: [],
    admin: { host: '127.0.0.1', port: 0 },
    accessLog: 'off',
    log: quietLog,
    ...opts.sidecar,
  });
  await giveIdentity(s, service);
  await s.start();
  registerInbound(s.addresses.inbound!.port, service);
  s.apply({
    version: 1,
    service,
    inboundProtocol: protocol,
    upstreams: {},
    meshServices: opts.meshServices ?? [service, 'web'],
    mtls: { mode: opts.mtls ?? 'PERMISSIVE' },
  });
  return s;
}

export async function startOutbound(
  service: string,
  upstreams: Record<string, UpstreamSnapshot>,
  opts: { httpProxy?: boolean; accessLog?: string; detectTimeoutMs?: number } = {},
): Promise<Sidecar> {
  const s = new Sidecar({
    service,
    version: 'default',
    id: `${service}-out`,
    kind: 'gateway',
    control: NO_CONTROL,
    detectTimeoutMs: opts.detectTimeoutMs,
    upstreams: Object.keys(upstreams).map((u) => ({ service: u, listen: { host: '127.0.0.1', port: 0 } })),
    httpProxy: opts.httpProxy ? { host: '127.0.0.1', port: 0 } : undefined,
    admin: { host: '127.0.0.1', port: 0 },
    accessLog: opts.accessLog ?? 'off',
    log: quietLog,
  });
  await giveIdentity(s, service);
  await s.start();
  // Mutual TLS to every backend at an inbound listener these helpers started, as the compiler would say.
  const snap: Snapshot = {
    version: 1,
    service,
    inboundProtocol: 'http',
    upstreams: withPeerMtls(upstreams),
    meshServices: [service, ...Object.keys(upstreams)].sort(),
  };
  s.apply(snap);
  return s;
}

/** Sends raw bytes and collects everything until the server closes or `ms` pass. */
export function rawExchange(port: number, data: string | Buffer, ms = 1000): Promise<string> {
  return new Promise((resolve) => {
    const sock = net.connect(port, '127.0.0.1');
    let out = '';
    const done = (): void => {
      clearTimeout(t);
      sock.destroy();
      resolve(out);
    };
    const t = setTimeout(done, ms);
    sock.on('data', (c) => {
      out += c.toString('latin1');
    });
    sock.on('close', done);
    sock.on('error', done);
    sock.write(data);
  });
}

export async function get(
  port: number,
  path = '/',
  headers: Record<string, string> = {},
  agent?: http.Agent,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, headers, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

export async function metricsText(s: Sidecar): Promise<string> {
  return s.metrics.text();
}

/**
 * A started sidecar of `service` (instance `<service>-0`) with only an HTTP-proxy
 * listener and no control plane: tests apply the compiler's snapshot to it themselves.
 */
export async function startHttpProxySidecar(service: string): Promise<Sidecar> {
  const s = new Sidecar({
    service,
    version: 'default',
    id: `${service}-0`,
    kind: 'sidecar',
    control: NO_CONTROL,
    upstreams: [],
    httpProxy: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    accessLog: 'off',
    log: quietLog,
  });
  await giveIdentity(s, service);
  await s.start();
  return s;
}
