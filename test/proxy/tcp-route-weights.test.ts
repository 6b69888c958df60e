// TCPRoute through a sidecar pair: each connection picks a backend by weight
// (postgres-v1 / postgres-v2 at 80/20), over many connections within a tolerance.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { closeServer, startInbound, startOutbound } from '../helpers/proxy-pair.js';

let servers: net.Server[] = [];
let inbounds: Sidecar[] = [];
let outbound: Sidecar;

/** A TCP server that answers every connection with its version and closes. */
async function versionServer(version: string): Promise<number> {
  const s = net.createServer((c) => c.end(version));
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  servers.push(s);
  return (s.address() as net.AddressInfo).port;
}

before(async () => {
  const eps = [];
  for (const v of ['v1', 'v2']) {
    const inbound = await startInbound('postgres', v, await versionServer(v), 'tcp');
    inbounds.push(inbound);
    eps.push({ id: `postgres-${v}-0`, host: '127.0.0.1', port: inbound.addresses.inbound!.port, version: v });
  }
  outbound = await startOutbound('backend', {
    postgres: {
      service: 'postgres',
      protocol: 'tcp',
      routes: [
        {
          name: 'default/pg-split/rule/0',
          match: {},
          backends: [
            { backend: 'postgres-v1', weight: 80 },
            { backend: 'postgres-v2', weight: 20 },
          ],
        },
      ],
      backends: {
        postgres: { name: 'postgres', endpoints: eps },
        'postgres-v1': { name: 'postgres-v1', endpoints: [eps[0]!] },
        'postgres-v2': { name: 'postgres-v2', endpoints: [eps[1]!] },
      },
    },
  });
});

after(async () => {
  await outbound.close();
  for (const i of inbounds) await i.close();
  for (const s of servers) await closeServer(s);
  servers = [];
  inbounds = [];
});

function readAll(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    let out = '';
    s.on('data', (c: Buffer) => {
      out += c.toString();
    });
    s.on('end', () => resolve(out));
    s.on('error', reject);
  });
}

test('connections split by the TCPRoute weights (80/20 within tolerance)', async () => {
  const port = outbound.addresses.upstreams.postgres!.port;
  const counts: Record<string, number> = {};
  const N = 400;
  for (let i = 0; i < N; i += 20) {
    const batch = await Promise.all(Array.from({ length: 20 }, () => readAll(port)));
    for (const v of batch) counts[v] = (counts[v] ?? 0) + 1;
  }
  assert.equal((counts.v1 ?? 0) + (counts.v2 ?? 0), N, `every connection answered: ${JSON.stringify(counts)}`);
  // 80 expected of 400 to v2; sd ≈ 8, so ±32 is 4 sd.
  assert.ok(Math.abs((counts.v2 ?? 0) - 80) <= 32, `v2 got ${counts.v2} of ${N}`);
});
