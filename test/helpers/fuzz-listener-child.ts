// The process the live-listener fuzz suites attack: a real sidecar pair (outbound with
// a per-upstream listener, a detect listener and the HTTP-proxy listener → inbound →
// an app speaking HTTP/1.1 and h2c on one port), run in a child process so that an
// input that crashes the proxy shows as this process exiting, with its stack on
// stderr, instead of taking the test runner down. It installs no uncaughtException
// handler on purpose: a crash must stay a crash.
//
// Protocol with the parent (IPC): sends { ports } once listening; answers 'ping' with
// 'pong' (so the parent can tell a blocked event loop from a slow one); exits when
// the parent goes away.
//
// The app answers `ok <method> <path>` after reading the body, except for paths
// starting /raw/: it writes the base64url bytes that follow as its whole response, as
// received, and closes (the response side of the fuzzing).
import type http from 'node:http';
import http2 from 'node:http2';
import type { UpstreamSnapshot } from '../../src/api/protocol.js';
import { listenH1AndH2 } from './h2.js';
import { startInbound, startOutbound } from './proxy-pair.js';

export interface ChildPorts {
  /** The outbound per-upstream listener of a service declared `http`. */
  readonly outbound: number;
  /** The outbound per-upstream listener of a service with no declared protocol (detection). */
  readonly detect: number;
  /** The outbound HTTP-proxy listener (the Host header names the service, `echo`). */
  readonly httpProxy: number;
  /** The inbound listener in front of the app. */
  readonly inbound: number;
}

const handler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse): void => {
  const url = req.url ?? '/';
  if (url.startsWith('/raw/') && 'socket' in req && !(req instanceof http2.Http2ServerRequest)) {
    const socket = req.socket;
    socket.end(Buffer.from(url.slice(5).split('?')[0]!, 'base64url'));
    return;
  }
  req.resume();
  req.on('end', () => {
    res.setHeader('content-type', 'text/plain');
    res.end(`ok ${req.method} ${url}`);
  });
  req.on('error', () => {});
};

async function main(): Promise<void> {
  const { port: appPort } = await listenH1AndH2(handler);
  const inbound = await startInbound('echo', 'v1', appPort);
  const endpoints = [{ id: 'echo-v1-0', host: '127.0.0.1', port: inbound.addresses.inbound!.port, version: 'v1' }];
  const up = (service: string, protocol: UpstreamSnapshot['protocol']): UpstreamSnapshot => ({
    service,
    protocol,
    routes: [],
    backends: { [service]: { name: service, endpoints } },
  });
  const outbound = await startOutbound(
    'web',
    { echo: up('echo', 'http'), 'echo-detect': up('echo-detect', 'detect') },
    { httpProxy: true, detectTimeoutMs: 200 },
  );
  const ports: ChildPorts = {
    outbound: outbound.addresses.upstreams.echo!.port,
    detect: outbound.addresses.upstreams['echo-detect']!.port,
    httpProxy: outbound.addresses.httpProxy!.port,
    inbound: inbound.addresses.inbound!.port,
  };
  process.on('message', (m) => {
    if (m === 'ping') process.send!('pong');
  });
  // Without a parent (it died, or closed the channel) there is nothing left to do.
  process.on('disconnect', () => process.exit(0));
  process.send!({ ports });
}

// Only as a forked child: `node --test dist/test/` also loads every file under test/ as a test file.
if (process.send !== undefined) void main();
