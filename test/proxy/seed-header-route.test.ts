// The seed's example end to end through the data plane: the committed fixture config
// (a 90/10 split plus `x-user` matching `.*@mycorp.com` → v2) is loaded, compiled into
// a snapshot by the control plane's compiler, and a sidecar pair routes by it.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { loadConfig } from '../../src/config/load.js';
import { compileSnapshot } from '../../src/control/compile/compiler.js';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { closeServer, get, listenHttp, startInbound, startOutbound } from '../helpers/proxy-pair.js';

const FIXTURE = fileURLToPath(new URL('../../../test/fixtures/config/mesh.yaml', import.meta.url));

let apps: { server: http.Server; port: number }[] = [];
let inbounds: Sidecar[] = [];
let outbound: Sidecar;
let port: number;

before(async () => {
  const loaded = await loadConfig([FIXTURE]);
  assert.deepEqual(loaded.problems, []);
  const instances = [];
  for (const v of ['v1', 'v2']) {
    const a = await listenHttp((_req, res) => res.end(v));
    apps.push(a);
    const inbound = await startInbound('backend', v, a.port);
    inbounds.push(inbound);
    instances.push({ id: `backend-${v}-0`, service: 'backend', version: v, status: 'healthy' as const, inbound: inbound.addresses.inbound! });
  }
  const proxy = {
    id: 'frontend-0',
    service: 'frontend',
    version: 'default',
    kind: 'sidecar' as const,
    admin: { host: '127.0.0.1', port: 1 },
    upstreams: [],
    pid: process.pid,
  };
  const snap = compileSnapshot({ config: loaded.config!, instances, proxy });
  outbound = await startOutbound('frontend', { backend: snap.upstreams.backend! });
  port = outbound.addresses.upstreams.backend!.port;
});

after(async () => {
  await outbound?.close();
  for (const i of inbounds) await i.close();
  for (const a of apps) await closeServer(a.server);
  apps = [];
  inbounds = [];
});

test('x-user matching .*@mycorp.com always goes to v2; everyone else is split 90/10', async () => {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });
  try {
    for (let i = 0; i < 20; i++) assert.equal((await get(port, '/api/items', { 'x-user': `u${i}@mycorp.com` }, agent)).body, 'v2');
    const counts: Record<string, number> = { v1: 0, v2: 0 };
    for (let i = 0; i < 400; i++) counts[(await get(port, '/api/items', { 'x-user': 'bob@example.com' }, agent)).body]!++;
    // 40 expected on v2; sd ≈ 6, so ±25 is 4 sd.
    assert.ok(Math.abs(counts.v2! - 40) <= 25, `others split ${JSON.stringify(counts)}`);
  } finally {
    agent.destroy();
  }
});
