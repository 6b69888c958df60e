// A retried request picks its backend again, and the new backendRef's filters apply to
// the request as the rule's filters left it, not on top of the failed attempt's: the
// backend that answers sees its own header edit once, and the rule's edit once.
import assert from 'node:assert/strict';
import type http from 'node:http';
import { after, before, test } from 'node:test';
import type { RouteEntry } from '../../src/api/protocol.js';
import type { Sidecar } from '../../src/proxy/sidecar.js';
import { closeServer, get, listenHttp, startInbound, startOutbound } from '../helpers/proxy-pair.js';

const servers: http.Server[] = [];
const sidecars: Sidecar[] = [];
/** The x-attempt-of and x-rule headers the good app saw, one entry per request. */
const goodSaw: string[] = [];
let port: number;

before(async () => {
  const bad = await listenHttp((_req, res) => {
    res.statusCode = 503;
    res.end('bad');
  });
  const good = await listenHttp((req, res) => {
    const of = req.headersDistinct['x-attempt-of'] ?? [];
    const rule = req.headersDistinct['x-rule'] ?? [];
    goodSaw.push(`${of.join('|')} / ${rule.join('|')}`);
    res.end('good');
  });
  servers.push(bad.server, good.server);
  const inBad = await startInbound('api', 'v1', bad.port);
  const inGood = await startInbound('api', 'v2', good.port);
  sidecars.push(inBad, inGood);
  const add = (name: string, value: string) => [{ type: 'RequestHeaderModifier' as const, edits: { add: [{ name, value }] } }];
  const route: RouteEntry = {
    name: 'default/api/rule/0', match: { path: { type: 'PathPrefix', value: '/' } },
    filters: add('x-rule', 'yes'),
    backends: [{ backend: 'api-v1', weight: 1, filters: add('x-attempt-of', 'v1') }, { backend: 'api-v2', weight: 1, filters: add('x-attempt-of', 'v2') }],
    retry: { codes: [503], attempts: 6, backoffMs: 1, nonIdempotent: false, maxBodyBytes: 65536 },
  };
  const ep = (s: Sidecar, version: string) => ({ id: `api-${version}-0`, host: '127.0.0.1', port: s.addresses.inbound!.port, version });
  const out = await startOutbound('web', {
    api: {
      service: 'api', protocol: 'http', routes: [route],
      backends: { 'api-v1': { name: 'api-v1', endpoints: [ep(inBad, 'v1')] }, 'api-v2': { name: 'api-v2', endpoints: [ep(inGood, 'v2')] } },
    },
  });
  sidecars.push(out);
  port = out.addresses.upstreams.api!.port;
});

after(async () => {
  for (const s of sidecars) await s.close();
  for (const s of servers) await closeServer(s);
});

test('each attempt carries only its own backendRef\'s edits, and the rule\'s once', async () => {
  let ok = 0;
  for (let i = 0; i < 40; i++) {
    const r = await get(port, `/x/${i}`);
    if (r.status === 200) ok++;
  }
  // Half the requests try v1 first and are retried; with 6 attempts nearly all reach v2.
  assert.ok(ok >= 36, `${ok} of 40 reached the good backend`);
  assert.equal(goodSaw.length, ok);
  for (const s of goodSaw) assert.equal(s, 'v2 / yes');
});
