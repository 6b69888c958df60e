// Waits the proxy makes on purpose, on a fake clock, over HTTP/1.1 and HTTP/2 alike: a
// retry waits for its backoff and a fault delay for its length, and each goes on once
// the clock has moved that far, with no real time spent. node:test's mock timers stand in
// for setTimeout from before the sidecars start, so every one-shot timer of theirs is on
// the fake clock; the clock only moves when a test moves it.
//
// How the assertions stay exact: the clock is moved a step at a time while polling for
// the app to see the request, starting once the wait can have begun. The fake time moved
// before the app saw it is then at least the wait, less one step (the wait may have
// begun up to a step after the polling did); a proxy that did not wait is seen after a
// step or two. No real time is measured.
import assert from 'node:assert/strict';
import { after, before, describe, mock, test } from 'node:test';
import type { RetryConfig, RouteEntry, UpstreamSnapshot } from '../../../src/api/protocol.js';
import type { Sidecar } from '../../../src/proxy/sidecar.js';
import { openClient, WIRE_PROTOCOLS, type TestClient } from '../../helpers/client.js';
import { eventually } from '../../helpers/eventually.js';
import { startInbound, startOutbound } from '../../helpers/proxy-pair.js';
import { scriptedApp, type ScriptedApp } from '../../helpers/scripted-app.js';

const STEP_MS = 1000;
const BACKOFF_MS = 60_000;
const DELAY_MS = 30_000;
/** Protocol detection never ends on the fake clock: a connection is always detected by its first bytes. */
const NO_DETECT_TIMEOUT_MS = 24 * 3600_000;

/** Moves the fake clock a step at a time until `seen()` holds; the fake time moved. */
async function advanceUntil(seen: () => boolean, what: string): Promise<number> {
  let moved = 0;
  await eventually(
    () => {
      if (seen()) return true;
      mock.timers.tick(STEP_MS);
      moved += STEP_MS;
      return false;
    },
    { what, intervalMs: 2 },
  );
  return moved;
}

const retry: RetryConfig = { codes: [503], attempts: 1, backoffMs: BACKOFF_MS, nonIdempotent: false, maxBodyBytes: 65536 };
const rule = (name: string, prefix: string, extra: Partial<RouteEntry>): RouteEntry => ({
  name: `default/${name}`,
  match: { path: { type: 'PathPrefix', value: prefix } },
  backends: [{ backend: 'api', weight: 1 }],
  ...extra,
});

for (const protocol of WIRE_PROTOCOLS) {
  describe(`waits on a fake clock, over ${protocol}`, () => {
    let app: ScriptedApp;
    let inbound: Sidecar;
    let outbound: Sidecar;
    let client: TestClient;

    before(async () => {
      mock.timers.enable({ apis: ['setTimeout'] });
      app = await scriptedApp('a');
      inbound = await startInbound('api', 'v1', app.port, 'http', { detectTimeoutMs: NO_DETECT_TIMEOUT_MS });
      const api: UpstreamSnapshot = {
        service: 'api',
        protocol: 'http',
        routes: [
          rule('backoff', '/backoff', { retry }),
          rule('delay', '/delay', { fault: { policy: 'default/slow', delay: { ms: DELAY_MS, percent: 100 } } }),
          rule('plain', '/', {}),
        ],
        backends: { api: { name: 'api', endpoints: [{ id: 'a', host: '127.0.0.1', port: inbound.addresses.inbound!.port, version: 'v1' }] } },
      };
      outbound = await startOutbound('web', { api }, { detectTimeoutMs: NO_DETECT_TIMEOUT_MS });
      client = openClient(protocol, outbound.addresses.upstreams.api!.port);
      // One request first, so what the inbound learns on its first (its app's protocol)
      // is known before the clock moves: its probe has a timeout of its own.
      assert.equal((await client.request('GET', '/plain/warm-up')).status, 200);
    });

    after(async () => {
      await client?.close();
      await outbound?.close();
      await inbound?.close();
      await app?.close();
      mock.timers.reset();
    });

    test('a retry is sent once the clock has passed its backoff (at least half the base: equal jitter), not before', async () => {
      app.script('/backoff', [503, 200]);
      const reply = client.request('GET', '/backoff');
      await eventually(() => app.saw('/backoff').length === 1, { what: 'the first attempt' });
      const moved = await advanceUntil(() => app.saw('/backoff').length === 2, 'the retry');
      assert.ok(moved >= BACKOFF_MS / 2 - STEP_MS, `the retry came after ${moved} ms of fake time`);
      const r = await reply;
      assert.deepEqual({ status: r.status, body: r.body }, { status: 200, body: 'a 200' });
    });

    test('a delayed request reaches the app once the clock has passed the delay, not before', async () => {
      const reply = client.request('POST', '/delay', {}, 'held');
      const moved = await advanceUntil(() => app.saw('/delay').length === 1, 'the delayed request');
      assert.ok(moved >= DELAY_MS - STEP_MS, `the request came after ${moved} ms of fake time`);
      const r = await reply;
      assert.deepEqual({ status: r.status, body: r.body }, { status: 200, body: 'a 200' });
      assert.deepEqual(
        app.saw('/delay').map((s) => s.body),
        ['held'],
      );
    });
  });
}
