// `trellis proxy`: runs one sidecar (or, with --gateway, an edge proxy with no app).
import { TrellisError } from '../errors.js';
import { Sidecar } from '../proxy/sidecar.js';
import { CREDENTIAL_ENV } from '../security/bootstrap-credential.js';
import { APP_PROBES_ENV, parseAppProbes } from '../proxy/app-health.js';
import { LISTEN_FDS_ENV, parseListenFds } from '../api/listen-fds.js';
import type { HostPort } from '../api/protocol.js';
import { ACCESS_LOG_FIELDS, type AccessLogField } from '../api/views.js';
import { parseBytes, parseCount, parseFlags, parseHostPort } from './args.js';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { nameservers } from '../proxy/dns/resolv-conf.js';
import { DEFAULT_DNS_LIMITS, type DnsLimits } from '../proxy/dns/dns-responder.js';

export const help = `Usage: trellis proxy --service NAME [options]

Runs a sidecar proxy beside one service instance: an inbound listener in front of the
app, and outbound listeners the app uses to reach other services.

Options:
  --service NAME            the mesh service this instance belongs to (required)
  --version V               the instance's version (default: default)
  --id ID                   unique proxy id (default: SERVICE-PID)
  --control URL             control plane admin URL (default: http://127.0.0.1:15000)
  --token T                 join token, when the control plane requires one (default: $TRELLIS_TOKEN)
  --credential-file PATH    the join credential from this file, read again before every
                            connection (on Kubernetes: the projected ServiceAccount token with
                            audience trellis, which the kubelet rotates); instead of
                            $TRELLIS_CREDENTIAL. The id defaults to $POD_NAME when set.
  --app HOST:PORT           where the app listens (sidecar)
  --inbound [HOST:]PORT     inbound listener other sidecars connect to (sidecar)
  --port SVCPORT=APPHOST:APPPORT,[HOST:]INBOUND
                            one port of a multi-port service: its app port and the inbound
                            listener in front of it (repeatable, in the service's order; the
                            first replaces --app and --inbound)
  --upstream SVC[:SVCPORT]=[HOST:]PORT
                            a local listener for upstream service SVC (repeatable); SVCPORT
                            picks a port of a multi-port service (default: its first)
  --http-proxy [HOST:]PORT  HTTP proxy listener: the Host header names the service
  --dns-listen [HOST:]PORT  DNS responder (UDP and TCP): mesh service names (svc, svc.ns,
                            svc.ns.svc, svc.ns.svc.cluster.local) answer with a loopback
                            address (127.255.x.y, one per service) where this proxy opens the
                            service's outbound listeners on its ports; other names are
                            forwarded to the name servers of /etc/resolv.conf
  --dns-upstream HOST[:PORT]
                            forward other names here instead (repeatable; default port 53)
  --dns-limit NAME=N        one of the responder's limits (repeatable): maxInFlight (1024),
                            forwardTimeoutMs (4000), maxQueryBytes (1232), maxReplyBytes
                            (65535), ttlSeconds (5), maxTcpConnections (64), tcpIdleMs
                            (10000), maxServices (1024: services given an address)
  --admin [HOST:]PORT       admin server with /metrics, /ready, /config, /identity (default: 127.0.0.1:0)
  --app-probe-concurrency N the kubelet's probes of the app (/app-health/...) run at once at
                            most; more are answered 503 at once (default: 16)
  --gateway                 no app: only outbound listeners (an edge proxy); a Gateway named
                            after --service opens its listeners' ports (on 127.0.0.1)
  --gateway-port PORT=[HOST:]ACTUAL
                            open the Gateway's port PORT at ACTUAL instead (repeatable; 0 picks
                            a free one); redirects to PORT name ACTUAL
  --egress [HOST:]PORT      with --gateway: the egress gateway's mutual-TLS listener, where
                            sidecars send calls to ExternalServices (Host names the host)
  --access-log PATH|-|off   JSON access log destination (default: - for stdout); a file is
                            created mode 0600
  --access-log-keep-query   log query strings as sent (default: values replaced by REDACTED)
  --access-log-max-bytes N  rotate the log file at N bytes (KiB/MiB/GiB suffixes allowed;
                            default: 10MiB)
  --access-log-max-files K  rotated files kept, PATH.1 newest (default: 5)
  --access-log-fields LIST  the fields each line carries, comma-separated (default: all; ts is
                            always written): ts, direction, source, destination, version, route,
                            method, path, status, grpc_status, duration_ms, bytes_sent,
                            bytes_received, upstream, attempts, error, tunnel

Listening sockets a runner holds for it come as inherited descriptors, named by
$TRELLIS_LISTEN_FDS (HOST:PORT=FD,…): a listener at one of those addresses takes the
socket instead of binding, so connections that waited while it restarted are served.

The proxy proves which instance it is with the bootstrap credential in $TRELLIS_CREDENTIAL
(\`trellis up\` sets it; otherwise mint one with \`trellis identity credential\`). It makes
its private key in memory, sends the control plane a CSR, and renews its certificate at
about two thirds of its life; /identity on the admin server shows it.

Example:
  trellis proxy --service backend --version v1 --app 127.0.0.1:8081 --inbound 9081 \\
    --upstream postgres=7001 --admin 9981
`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseFlags(
    argv,
    {
      service: { type: 'string' },
      version: { type: 'string', default: 'default' },
      id: { type: 'string' },
      control: { type: 'string', default: 'http://127.0.0.1:15000' },
      token: { type: 'string' },
      'credential-file': { type: 'string' },
      app: { type: 'string' },
      inbound: { type: 'string' },
      port: { type: 'string', multiple: true, default: [] },
      upstream: { type: 'string', multiple: true, default: [] },
      'http-proxy': { type: 'string' },
      'dns-listen': { type: 'string' },
      'dns-upstream': { type: 'string', multiple: true, default: [] },
      'dns-limit': { type: 'string', multiple: true, default: [] },
      admin: { type: 'string', default: '127.0.0.1:0' },
      'app-probe-concurrency': { type: 'string' },
      gateway: { type: 'boolean', default: false },
      'gateway-port': { type: 'string', multiple: true, default: [] },
      egress: { type: 'string' },
      'access-log': { type: 'string', default: '-' },
      'access-log-keep-query': { type: 'boolean', default: false },
      'access-log-max-bytes': { type: 'string' },
      'access-log-max-files': { type: 'string' },
      'access-log-fields': { type: 'string' },
    },
    false,
    'proxy',
  );
  if (!values.service) throw new TrellisError('TRELLIS_E_USAGE', { reason: '--service is required; see `trellis proxy --help`' });
  const ports = values.port.map((spec) => parsePortFlag(spec));
  // The first port is the app and inbound listener the rest of the proxy knows (metrics, the hello's app and inbound).
  if (ports[0] !== undefined) {
    values.app ??= `${ports[0].app.host}:${ports[0].app.port}`;
    values.inbound ??= `${ports[0].inbound.host}:${ports[0].inbound.port}`;
  }
  if (!values.gateway && !values.app !== !values.inbound) {
    throw new TrellisError('TRELLIS_E_USAGE', { reason: 'a sidecar needs both --app and --inbound (or neither, with only outbound listeners)' });
  }
  if (values.egress !== undefined && !values.gateway) {
    throw new TrellisError('TRELLIS_E_USAGE', { reason: "--egress is the egress gateway's listener; it needs --gateway" });
  }
  const upstreams = values.upstream.map((spec) => {
    const eq = spec.indexOf('=');
    if (eq <= 0) throw new TrellisError('TRELLIS_E_USAGE', { reason: `--upstream expects SERVICE[:SERVICEPORT]=[HOST:]PORT, got "${spec}"` });
    const target = spec.slice(0, eq);
    const colon = target.indexOf(':');
    const listen = parseHostPort(spec.slice(eq + 1), '--upstream');
    if (colon === -1) return { service: target, listen };
    return { service: target.slice(0, colon), listen, servicePort: portNumber(target.slice(colon + 1), `--upstream ${spec}`) };
  });
  const gatewayListen = gatewayPorts(values['gateway-port']);
  // Sockets the runner holds across this proxy's restarts (src/runner/held-listeners.ts).
  const listenFds = parseListenFds(process.env[LISTEN_FDS_ENV]);
  const log = (line: string): void => void process.stderr.write(`${line}\n`);
  // No process.on('uncaughtException') here, on purpose. node documents the process as
  // in an unknown state after one: serving on would carry half-done work (pooled
  // connections, open attempts, breaker counts) into every later request. Instead each
  // listener's entry code ends the one connection or stream whose handling threw, with a
  // metric and a log line (src/proxy/listeners/listener-context.ts); an exception that still
  // reaches here is a bug, and ends the process for its runner to restart.
  const sidecar = new Sidecar({
    service: values.service,
    version: values.version,
    // On Kubernetes the injected sidecar has its pod's name in $POD_NAME (the downward API).
    id: values.id ?? (values['credential-file'] !== undefined ? process.env.POD_NAME || undefined : undefined) ?? `${values.service}-${process.pid}`,
    kind: values.gateway || !values.app ? 'gateway' : 'sidecar',
    control: values.control,
    token: values.token ?? process.env.TRELLIS_TOKEN,
    // From the environment only: a flag would show the credential to anyone running `ps`.
    credential: process.env[CREDENTIAL_ENV],
    ...(values['credential-file'] !== undefined ? { credentialFile: values['credential-file'] } : {}),
    // Set by the Kubernetes injector: the app's probes the kubelet sends to /app-health/ (proxy/app-health.ts).
    appProbes: parseAppProbes(process.env[APP_PROBES_ENV]),
    ...(values['app-probe-concurrency'] !== undefined ? { appProbeConcurrency: parseCount(values['app-probe-concurrency'], '--app-probe-concurrency') } : {}),
    app: values.app ? parseHostPort(values.app, '--app') : undefined,
    inbound: values.inbound ? parseHostPort(values.inbound, '--inbound') : undefined,
    ...(ports.length > 0 ? { ports } : {}),
    upstreams,
    ...(gatewayListen !== undefined ? { gatewayListen } : {}),
    httpProxy: values['http-proxy'] ? parseHostPort(values['http-proxy'], '--http-proxy') : undefined,
    ...(values['dns-listen'] !== undefined
      ? {
          dns: {
            listen: parseHostPort(values['dns-listen'], '--dns-listen'),
            upstreams: dnsUpstreams(values['dns-upstream']),
            ...dnsLimits(values['dns-limit']),
          },
        }
      : {}),
    ...(values.egress !== undefined ? { egress: parseHostPort(values.egress, '--egress') } : {}),
    admin: parseHostPort(values.admin, '--admin'),
    ...(listenFds.size > 0 ? { listenFds } : {}),
    accessLog: values['access-log'],
    accessLogOptions: {
      keepQuery: values['access-log-keep-query'],
      maxFileBytes: values['access-log-max-bytes'] === undefined ? undefined : parseBytes(values['access-log-max-bytes'], '--access-log-max-bytes'),
      maxFiles: values['access-log-max-files'] === undefined ? undefined : parseCount(values['access-log-max-files'], '--access-log-max-files'),
      fields: values['access-log-fields'] === undefined ? undefined : accessLogFields(values['access-log-fields']),
    },
    log,
  });
  await sidecar.start();
  const a = sidecar.addresses;
  log(
    `proxy ${values.service}: admin http://${a.admin!.host}:${a.admin!.port}` +
      (a.inbound ? `, inbound ${a.inbound.host}:${a.inbound.port}` : '') +
      Object.entries(a.upstreams)
        .map(([s, l]) => `, ${s} at ${l.host}:${l.port}`)
        .join('') +
      (a.httpProxy ? `, http proxy ${a.httpProxy.host}:${a.httpProxy.port}` : '') +
      (a.dns ? `, dns ${a.dns.host}:${a.dns.port}` : ''),
  );
  await new Promise<void>((resolve) => {
    const stop = (): void => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  await sidecar.close();
  return 0;
}

/** Where the DNS responder forwards names that are not the mesh's: the flags, else /etc/resolv.conf's name servers. */
function dnsUpstreams(flags: readonly string[]): HostPort[] {
  if (flags.length > 0) return flags.map((f) => (isIP(f) !== 0 ? { host: f, port: 53 } : parseHostPort(f, '--dns-upstream')));
  let text = '';
  try {
    text = readFileSync(RESOLV_CONF, 'utf8');
  } catch (err) {
    process.stderr.write(`trellis proxy: cannot read ${RESOLV_CONF} (${(err as NodeJS.ErrnoException).code}); names outside the mesh will fail\n`);
  }
  return nameservers(text);
}

const RESOLV_CONF = '/etc/resolv.conf';

/** `--dns-limit maxInFlight=256`: the responder's limits by name (DEFAULT_DNS_LIMITS), and maxServices. */
export function dnsLimits(specs: readonly string[]): { limits: Partial<DnsLimits>; maxServices?: number } {
  const limits: Record<string, number> = {};
  let maxServices: number | undefined;
  for (const spec of specs) {
    const eq = spec.indexOf('=');
    const name = spec.slice(0, eq);
    const text = spec.slice(eq + 1);
    const n = /^\d{1,9}$/.test(text) ? Number(text) : NaN;
    const known = name === 'maxServices' || Object.hasOwn(DEFAULT_DNS_LIMITS, name);
    if (eq <= 0 || !known || !(n >= 1))
      throw new TrellisError('TRELLIS_E_USAGE', {
        reason: `--dns-limit expects NAME=N (a positive integer) with NAME one of ${[...Object.keys(DEFAULT_DNS_LIMITS), 'maxServices'].join(', ')}; got "${spec}"`,
      });
    if (name === 'maxServices') maxServices = n;
    else limits[name] = n;
  }
  return { limits: limits as Partial<DnsLimits>, ...(maxServices !== undefined ? { maxServices } : {}) };
}

/** `--access-log-fields ts,method,path,status`: names from ACCESS_LOG_FIELDS. */
function accessLogFields(text: string): AccessLogField[] {
  const known: readonly string[] = ACCESS_LOG_FIELDS;
  const fields = text.split(',').map((f) => f.trim());
  for (const f of fields) {
    if (!known.includes(f))
      throw new TrellisError('TRELLIS_E_USAGE', { reason: `--access-log-fields: "${f}" is not a field; the fields are ${ACCESS_LOG_FIELDS.join(', ')}` });
  }
  return fields as AccessLogField[];
}

/** A service port number (1-65535) from a flag, or a usage error naming the flag. */
function portNumber(text: string, flag: string): number {
  const n = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(n >= 1 && n <= 65535)) throw new TrellisError('TRELLIS_E_USAGE', { reason: `${flag}: "${text}" is not a port number (1-65535)` });
  return n;
}

/** `--port 8080=127.0.0.1:9001,127.0.0.1:9101` → service port 8080, its app and its inbound listener. */
function parsePortFlag(spec: string): { port: number; app: HostPort; inbound: HostPort } {
  const eq = spec.indexOf('=');
  const comma = spec.indexOf(',', eq);
  if (eq <= 0 || comma === -1)
    throw new TrellisError('TRELLIS_E_USAGE', { reason: `--port expects SERVICEPORT=APPHOST:APPPORT,[HOST:]INBOUNDPORT, got "${spec}"` });
  return {
    port: portNumber(spec.slice(0, eq), '--port'),
    app: parseHostPort(spec.slice(eq + 1, comma), '--port'),
    inbound: parseHostPort(spec.slice(comma + 1), '--port'),
  };
}

/** `--gateway-port 8443=127.0.0.1:0` flags: where Gateway ports are opened (all on one host). */
function gatewayPorts(specs: readonly string[]): { host?: string; ports: Map<number, number> } | undefined {
  if (specs.length === 0) return undefined;
  const ports = new Map<number, number>();
  let host: string | undefined;
  for (const spec of specs) {
    const eq = spec.indexOf('=');
    if (eq <= 0) throw new TrellisError('TRELLIS_E_USAGE', { reason: `--gateway-port expects PORT=[HOST:]PORT, got "${spec}"` });
    const at = parseHostPort(spec.slice(eq + 1), '--gateway-port');
    if (host !== undefined && at.host !== host) throw new TrellisError('TRELLIS_E_USAGE', { reason: '--gateway-port: every Gateway port opens on one host' });
    host = at.host;
    ports.set(portNumber(spec.slice(0, eq), `--gateway-port ${spec}`), at.port);
  }
  return { ...(host !== undefined ? { host } : {}), ports };
}
