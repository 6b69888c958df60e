// No bytes a client sends may end a proxy: an error while handling one connection (or
// one HTTP/2 stream) ends that connection or stream only, is counted in
// trellis_proxy_connection_errors_total and logged once, and every other client is
// served on. Checked on every listener kind: inbound (declared HTTP, and detected),
// an outbound upstream listener (HTTP, and detected), and the HTTP-proxy listener, and
// for the `trellis proxy` process itself.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { fileURLToPath } from 'node:url';
import type { UpstreamSnapshot } from '../../src/api/protocol.js';
import { Sidecar } from '../../src/proxy/sidecar.js';
import { eventually } from '../helpers/eventually.js';
import { h2Request, listenH1AndH2 } from '../helpers/h2.js';
import { F, frame, goaway, PREFACE, RawH2, request, T } from '../helpers/h2-frames.js';
import { get, metricsText, NO_CONTROL, rawExchange, startInbound, startOutbound } from '../helpers/proxy-pair.js';

let app: net.Server;
let appPort: number;
let inbound: Sidecar;
let inboundDetect: Sidecar;
let outbound: Sidecar;
const logged: string[] = [];
/**
 * Exceptions that reached the process. The test runner catches them (and blames the
 * file), where a proxy would have died: each test checks none did.
 */
const crashes: string[] = [];
process.on('uncaughtExceptionMonitor', (err) => {
  crashes.push(String(err));
});

/** An app that answers HTTP/1.1 and h2c on one port with `app <path>`. */
function startApp(): Promise<number> {
  const handler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse): void => {
    res.end(`app ${req.url}`);
  };
  return listenH1AndH2(handler).then((a) => {
    app = a.server;
    return a.port;
  });
}

const upstreamTo = (service: string, port: number, protocol: 'http' | 'detect'): UpstreamSnapshot => ({
  service,
  protocol,
  routes: [],
  backends: { [service]: { name: service, endpoints: [{ id: `${service}-0`, host: '127.0.0.1', port, version: 'v1' }] } },
});

before(async () => {
  appPort = await startApp();
  inbound = await startInbound('api', 'v1', appPort);
  inboundDetect = await startInbound('apid', 'v1', appPort, 'detect', { detectTimeoutMs: 500 });
  outbound = new Sidecar({
    service: 'web',
    version: 'default',
    id: 'web-out',
    kind: 'gateway',
    control: NO_CONTROL,
    upstreams: [
      { service: 'api', listen: { host: '127.0.0.1', port: 0 } },
      { service: 'apid', listen: { host: '127.0.0.1', port: 0 } },
    ],
    httpProxy: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    accessLog: 'off',
    log: (line) => {
      logged.push(line);
    },
  });
  await outbound.start();
  outbound.apply({
    version: 1,
    service: 'web',
    inboundProtocol: 'http',
    upstreams: { api: upstreamTo('api', inbound.addresses.inbound!.port, 'http'), apid: upstreamTo('apid', inboundDetect.addresses.inbound!.port, 'detect') },
  });
});

after(async () => {
  await outbound.close();
  await inboundDetect.close();
  await inbound.close();
  await new Promise<void>((r) => app.close(() => r()));
});

/** Every listener, by the name the tests use, and its port. */
function listeners(): [string, number][] {
  return [
    ['inbound', inbound.addresses.inbound!.port],
    ['inbound (detect)', inboundDetect.addresses.inbound!.port],
    ['outbound upstream', outbound.addresses.upstreams.api!.port],
    ['outbound upstream (detect)', outbound.addresses.upstreams.apid!.port],
    ['http-proxy', outbound.addresses.httpProxy!.port],
  ];
}

/** The HTTP/2 preface, SETTINGS and one request, then `last`, all in one write. */
const onePacket = (last: Buffer): Buffer => Buffer.concat([PREFACE, frame(T.SETTINGS, 0, 0), request(1, '/x', { authority: 'api' }), last]);

const ping = frame(T.PING, 0, 1, Buffer.alloc(8)); // PING on a stream: a connection error
const windowUpdate0 = frame(T.WINDOW_UPDATE, 0, 0, Buffer.alloc(4)); // an increment of 0 on the connection: a connection error

const PACKETS: [string, Buffer][] = [
  ['GOAWAY (NO_ERROR)', onePacket(goaway(0, 0))],
  ['GOAWAY (PROTOCOL_ERROR)', onePacket(goaway(1, 1))],
  ['PING on a stream', onePacket(ping)],
  ['WINDOW_UPDATE of 0', onePacket(windowUpdate0)],
];

async function h2Get(port: number, path: string): Promise<number> {
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on('error', () => {});
  try {
    return (await h2Request(session, { ':path': path, ':authority': 'api' })).status;
  } finally {
    session.destroy();
  }
}

test('a request and a connection error in one packet end that connection only, on every listener', async () => {
  for (const [name, port] of listeners()) {
    for (const [what, packet] of PACKETS) {
      const c = new RawH2(port);
      c.write(packet);
      await c.until(`${name}: the connection with ${what} closed`, (r) => r.closed || r.goawayCode() !== undefined);
      c.close();
      // The proxy is alive and serves the next client, HTTP/2 and HTTP/1.1.
      assert.equal(await h2Get(port, '/after'), 200, `${name} after ${what}: HTTP/2`);
      assert.equal((await get(port, '/after', { host: 'api' })).status, 200, `${name} after ${what}: HTTP/1.1`);
      assert.deepEqual(crashes, [], `${name} after ${what}: no exception reached the process`);
    }
  }
});

test('the trellis proxy process survives the one-packet HTTP/2 crash', async () => {
  const bin = fileURLToPath(new URL('../../../bin/trellis.js', import.meta.url));
  const child: ChildProcess = spawn(
    process.execPath,
    [bin, 'proxy', '--service', 'edge', '--gateway', '--http-proxy', '127.0.0.1:0', '--control', NO_CONTROL, '--access-log', 'off'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  let exited: number | null | undefined;
  child.stderr!.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  child.on('exit', (code) => {
    exited = code;
  });
  try {
    const m = await eventually(() => /http proxy 127\.0\.0\.1:(\d+)/.exec(stderr) ?? false, { timeoutMs: 10_000, what: 'the proxy to start' });
    const port = Number(m[1]);
    for (const [what, packet] of PACKETS) {
      const c = new RawH2(port);
      c.write(packet);
      await c.until(`the connection with ${what} closed`, (r) => r.closed || r.goawayCode() !== undefined);
      c.close();
    }
    // Before its first snapshot the proxy answers 503 no-config: it is alive and serving.
    const res = await rawExchange(port, 'GET / HTTP/1.1\r\nhost: api\r\nconnection: close\r\n\r\n');
    assert.match(res, /^HTTP\/1\.1 503 /, `the proxy still answers (exit code ${exited}; stderr: ${stderr})`);
    assert.equal(exited, undefined, `the proxy exited: ${stderr}`);
  } finally {
    child.kill('SIGTERM');
    if (exited === undefined) await new Promise((r) => child.once('exit', r));
  }
});

/**
 * Makes the telemetry of requests to `destination` throw, as a bug in any layer would:
 * the error is thrown while the listener's entry code is handling the connection
 * (the unknown-service answer is made synchronously, and telemetry observes it at once).
 */
function throwOnObserve(s: Sidecar, destination: string): () => void {
  const original = s.metrics.observeHttp.bind(s.metrics);
  s.metrics.observeHttp = (l, ...rest) => {
    if (l.destination === destination) throw new TypeError('injected failure');
    original(l, ...rest);
  };
  return () => {
    s.metrics.observeHttp = original;
  };
}

function connectionErrors(text: string, listener: string, reason: string): number {
  const m = new RegExp(`trellis_proxy_connection_errors_total\\{listener="${listener}",reason="${reason}"[^}]*\\} (\\d+)`).exec(text);
  return m === null ? 0 : Number(m[1]);
}

test('an exception while handling one HTTP/2 stream resets that stream only: the session and other clients are served', async () => {
  // A Host naming no service is counted as destination "unknown" (labels come from the service table).
  const restore = throwOnObserve(outbound, 'unknown');
  const port = outbound.addresses.httpProxy!.port;
  const before = connectionErrors(await metricsText(outbound), 'http-proxy', 'h2-stream');
  const session = http2.connect(`http://127.0.0.1:${port}`);
  session.on('error', () => {});
  try {
    const failed = h2Request(session, { ':path': '/x', ':authority': 'boom' }).then(
      () => 'answered',
      () => 'reset',
    );
    const ok = h2Request(session, { ':path': '/y', ':authority': 'api' });
    assert.equal((await ok).status, 200, 'the other stream on the same session is served');
    await failed;
    assert.equal((await h2Request(session, { ':path': '/z', ':authority': 'api' })).status, 200, 'the session takes new streams');
    assert.equal(await h2Get(port, '/other'), 200, 'another client is served');
    assert.equal(connectionErrors(await metricsText(outbound), 'http-proxy', 'h2-stream'), before + 1);
    assert.ok(
      logged.some((l) => /http-proxy listener: handling an HTTP\/2 stream threw.*TypeError/.test(l) && !l.includes('injected failure')),
      `one log line naming the error's class, not its message: ${logged.join('\n')}`,
    );
    assert.deepEqual(crashes, []);
  } finally {
    session.destroy();
    restore();
  }
});

test('an exception while handling one HTTP/1.1 connection ends that connection only', async () => {
  // A Host naming no service is counted as destination "unknown" (labels come from the service table).
  const restore = throwOnObserve(outbound, 'unknown');
  const port = outbound.addresses.httpProxy!.port;
  const before = connectionErrors(await metricsText(outbound), 'http-proxy', 'http1');
  const keep = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    // A kept-alive connection of another client, open across the failure.
    assert.equal((await get(port, '/a', { host: 'api' }, keep)).status, 200);
    const out = await rawExchange(port, 'GET /x HTTP/1.1\r\nhost: boom\r\n\r\n', 5000);
    assert.ok(!/^HTTP\/1\.1 200/.test(out));
    assert.equal((await get(port, '/b', { host: 'api' }, keep)).status, 200, "the other client's connection is served");
    assert.equal((await get(port, '/c', { host: 'api' })).status, 200, 'a new connection is served');
    assert.equal(connectionErrors(await metricsText(outbound), 'http-proxy', 'http1'), before + 1);
    assert.ok(
      logged.some((l) => /http-proxy listener: handling an HTTP\/1\.1 connection threw/.test(l)),
      logged.join('\n'),
    );
    assert.deepEqual(crashes, []);
  } finally {
    keep.destroy();
    restore();
  }
});

test("an exception while relaying an upstream's response ends that client only, HTTP/1.1 and HTTP/2", async () => {
  // Telemetry runs when the response has been relayed: from the upstream's events, not the client's.
  const restore = throwOnObserve(outbound, 'apid');
  const port = outbound.addresses.httpProxy!.port;
  const text0 = await metricsText(outbound);
  try {
    const out = await rawExchange(port, 'GET /x HTTP/1.1\r\nhost: apid\r\n\r\n', 5000);
    assert.match(out, /^HTTP\/1\.1 200 /, 'the response was relayed before the failure');
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', () => {});
    try {
      await h2Request(session, { ':path': '/y', ':authority': 'apid' }).catch(() => undefined);
      assert.equal((await h2Request(session, { ':path': '/z', ':authority': 'api' })).status, 200, 'the session serves on');
    } finally {
      session.destroy();
    }
    assert.equal((await get(port, '/c', { host: 'api' })).status, 200, 'other clients are served');
    const text = await metricsText(outbound);
    assert.equal(connectionErrors(text, 'http-proxy', 'http1'), connectionErrors(text0, 'http-proxy', 'http1') + 1);
    assert.equal(connectionErrors(text, 'http-proxy', 'h2-stream'), connectionErrors(text0, 'http-proxy', 'h2-stream') + 1);
    assert.deepEqual(crashes, []);
  } finally {
    restore();
  }
});

test('an exception while connecting a TCP client ends that connection only', async () => {
  const echo = net.createServer((socket) => {
    socket.on('error', () => {});
    socket.pipe(socket);
  });
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
  const s = await startOutbound('edge', {
    db: {
      service: 'db',
      protocol: 'tcp',
      routes: [],
      backends: { db: { name: 'db', endpoints: [{ id: 'db-0', host: '127.0.0.1', port: (echo.address() as net.AddressInfo).port, version: 'v1' }] } },
    },
  });
  const port = s.addresses.upstreams.db!.port;
  const roundTrip = async (): Promise<string> => {
    const c = net.connect(port, '127.0.0.1');
    c.on('error', () => {});
    let got = '';
    c.on('data', (d: Buffer) => {
      got += d.toString();
    });
    c.write('ping');
    await eventually(() => got === 'ping' || c.destroyed || c.readableEnded, { timeoutMs: 3000, what: 'an echo or a close' });
    c.destroy();
    return got;
  };
  // As a bug in counting the connection would: thrown once it is connected, from the upstream's event.
  const original = s.metrics.tcpOpened.bind(s.metrics);
  s.metrics.tcpOpened = () => {
    throw new TypeError('injected failure');
  };
  try {
    assert.equal(await roundTrip(), '', 'that connection is closed');
    s.metrics.tcpOpened = original;
    assert.equal(await roundTrip(), 'ping', 'the next one is served');
    assert.equal(connectionErrors(await metricsText(s), 'outbound', 'tcp'), 1);
    assert.deepEqual(crashes, []);
  } finally {
    s.metrics.tcpOpened = original;
    await s.close();
    await new Promise<void>((r) => echo.close(() => r()));
  }
});

test('an HTTP/2 upstream answering a status HTTP/2 cannot carry gets a 502, and the proxy serves on', async () => {
  // A raw h2c "app" that answers every request with `:status: 999`.
  const bad = net.createServer((socket) => {
    socket.on('error', () => {});
    socket.write(frame(T.SETTINGS, 0, 0));
    let buf = Buffer.alloc(0);
    let prefaceSeen = false;
    socket.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      if (!prefaceSeen) {
        if (buf.length < PREFACE.length) return;
        prefaceSeen = true;
        buf = buf.subarray(PREFACE.length);
      }
      while (buf.length >= 9 && buf.length >= 9 + buf.readUIntBE(0, 3)) {
        const type = buf[3];
        const flags = buf[4]!;
        const stream = buf.readUInt32BE(5) & 0x7fffffff;
        buf = buf.subarray(9 + buf.readUIntBE(0, 3));
        if (type === T.SETTINGS && (flags & F.ACK) === 0) socket.write(frame(T.SETTINGS, F.ACK, 0));
        // literal without indexing, name :status (static index 8), value 999
        if (type === T.HEADERS) socket.write(frame(T.HEADERS, F.END_HEADERS | F.END_STREAM, stream, Buffer.from([0x08, 0x03, ...Buffer.from('999')])));
      }
    });
  });
  await new Promise<void>((r) => bad.listen(0, '127.0.0.1', r));
  const badPort = (bad.address() as net.AddressInfo).port;
  const s = await startOutbound('edge', { bad: upstreamTo('bad', badPort, 'http') }, { httpProxy: true });
  try {
    const port = s.addresses.httpProxy!.port;
    const session = http2.connect(`http://127.0.0.1:${port}`);
    session.on('error', () => {});
    try {
      const r = await h2Request(session, { ':path': '/', ':authority': 'bad' });
      assert.equal(r.status, 502);
      assert.equal(r.headers['trellis-error'], 'upstream-protocol');
    } finally {
      session.destroy();
    }
    assert.equal((await get(port, '/', { host: 'nothing' })).status, 503, 'the proxy serves on');
    assert.deepEqual(crashes, []);
  } finally {
    await s.close();
    await new Promise<void>((r) => bad.close(() => r()));
  }
});
