// What a canary of a version is judged on besides its requests, as a sidecar counts it:
// ejections by outlier detection per version (and reason), and the requests for a
// version that went to its failover backend because none of its endpoints could take
// them. Every label comes from the snapshot or a fixed set, never from a request.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import type { UpstreamSnapshot } from '../../src/api/protocol.js';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { closeServer, get, listenHttp, metricsText, startOutbound } from '../helpers/proxy-pair.js';

const cleanup: (() => Promise<void> | void)[] = [];
after(async () => {
  for (const c of cleanup.reverse()) await c();
});

test('an ejected version is counted per version, and its requests sent to the whole service as failovers', async () => {
  const v1 = await listenHttp((_req, res) => res.end('v1'));
  const v2 = await listenHttp((_req, res) => {
    res.statusCode = 500;
    res.end('v2 is broken');
  });
  cleanup.push(
    () => closeServer(v1.server),
    () => closeServer(v2.server),
  );
  const ep = (id: string, port: number, version: string) => ({ id, host: '127.0.0.1', port, version });
  const api: UpstreamSnapshot = {
    service: 'api',
    protocol: 'http',
    // Every request to v2, as a canary step at 100% would send them.
    routes: [{ name: 'default/api-split/rule/0', match: {}, backends: [{ backend: 'api-v2', weight: 1 }] }],
    backends: {
      api: { name: 'api', endpoints: [ep('api-v1-0', v1.port, 'v1'), ep('api-v2-0', v2.port, 'v2')] },
      'api-v2': { name: 'api-v2', endpoints: [ep('api-v2-0', v2.port, 'v2')], failover: 'api' },
    },
  };
  const out: Sidecar = await startOutbound('web', { api });
  cleanup.push(() => out.close());
  const port = out.addresses.upstreams.api!.port;

  const statuses: number[] = [];
  for (let i = 0; i < 10; i++) statuses.push((await get(port, `/r/${i}`)).status);
  // Five 500s eject v2's only endpoint (consecutive5xx); the rest go to v1.
  assert.deepEqual(statuses, [500, 500, 500, 500, 500, 200, 200, 200, 200, 200]);
  const text = await metricsText(out);
  assert.match(text, /trellis_outlier_ejections_total\{destination="api",destination_version="v2",reason="consecutive-5xx"[^}]*\} 1\n/);
  assert.match(text, /trellis_http_failovers_total\{destination="api",backend="api-v2",failover_backend="api"[^}]*\} 5\n/);
});
