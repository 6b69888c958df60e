// The Mesh's spec.proxyLimits: validated with field paths, normalized to milliseconds
// and bytes, carried in every proxy's snapshot, and applied by the sidecar (fields it
// does not name keep their defaults; a bad value is refused and the last good limits stay).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { compileSnapshot } from '../../src/control/compile/compiler.js';
import { loadConfig } from '../../src/config/load.js';
import { DEFAULT_LIMITS, limitsWith } from '../../src/proxy/listeners/limits.js';
import { Sidecar } from '../../src/proxy/sidecar.js';
import { mesh, problemAt, tempDir } from './helpers.js';

let tmp: Awaited<ReturnType<typeof tempDir>>;
before(async () => {
  tmp = await tempDir();
});
after(() => tmp.cleanup());

let n = 0;
const services = `    - name: web
      upstreams: [api]
    - name: api
`;
async function load(limits: string) {
  const file = await tmp.write(`mesh-${++n}.yaml`, mesh(services, limits));
  return { file, result: await loadConfig([file]) };
}

describe('spec.proxyLimits', () => {
  it('reaches every proxy snapshot in milliseconds and bytes', async () => {
    const { result } = await load(
      '  proxyLimits:\n    requestHeaderTimeout: 5s\n    idleTimeout: 1m\n    h2MaxConcurrentStreams: 50\n    maxRequestHeadBytes: 32768\n',
    );
    assert.deepEqual(result.problems, []);
    const snap = compileSnapshot({
      config: result.config!,
      instances: [],
      proxy: { id: 'web-1', service: 'web', version: 'default', kind: 'sidecar', upstreams: [], pid: 1, admin: { host: '127.0.0.1', port: 1 } },
    });
    assert.deepEqual(snap.limits, { requestHeaderTimeoutMs: 5000, idleTimeoutMs: 60_000, h2MaxConcurrentStreams: 50, maxRequestHeadBytes: 32768 });
  });

  it('carries the /metrics limits (maxConcurrentScrapes, scrapeTimeout) to the snapshot', async () => {
    const { result } = await load('  proxyLimits:\n    maxConcurrentScrapes: 4\n    scrapeTimeout: 10s\n');
    assert.deepEqual(result.problems, []);
    const snap = compileSnapshot({
      config: result.config!,
      instances: [],
      proxy: { id: 'web-1', service: 'web', version: 'default', kind: 'sidecar', upstreams: [], pid: 1, admin: { host: '127.0.0.1', port: 1 } },
    });
    assert.deepEqual(snap.limits, { maxConcurrentScrapes: 4, scrapeTimeoutMs: 10_000 });
  });

  it('refuses /metrics limits out of bounds, with the field path', async () => {
    for (const bad of ['0', '65', '2.5']) {
      const { file, result } = await load(`  proxyLimits:\n    maxConcurrentScrapes: ${bad}\n    scrapeTimeout: soon\n`);
      assert.equal(result.config, undefined);
      assert.match(problemAt(result, 'spec.proxyLimits.maxConcurrentScrapes', file).message, /1 to 64/);
      assert.match(problemAt(result, 'spec.proxyLimits.scrapeTimeout', file).message, /duration/);
    }
  });

  it('is absent from snapshots when the mesh sets none', async () => {
    const { result } = await load('');
    const snap = compileSnapshot({
      config: result.config!,
      instances: [],
      proxy: { id: 'web-1', service: 'web', version: 'default', kind: 'sidecar', upstreams: [], pid: 1, admin: { host: '127.0.0.1', port: 1 } },
    });
    assert.equal(snap.limits, undefined);
  });

  it('refuses values that would turn a limit off, with the field path', async () => {
    const { file, result } = await load('  proxyLimits:\n    h2MaxConcurrentStreams: 0\n    requestHeaderTimeout: forever\n    maxHeaders: 3\n');
    assert.equal(result.config, undefined);
    assert.match(problemAt(result, 'spec.proxyLimits.h2MaxConcurrentStreams', file).message, /1 to 10000/);
    assert.match(problemAt(result, 'spec.proxyLimits.requestHeaderTimeout', file).message, /duration/);
    problemAt(result, 'spec.proxyLimits.maxHeaders', file);
  });
});

describe('a sidecar applying limits', () => {
  it('takes the snapshot limits over its defaults, and keeps the last good ones when refused', async () => {
    const s = new Sidecar({
      service: 'web',
      version: 'default',
      id: 'web-limits',
      kind: 'gateway',
      control: 'http://127.0.0.1:1',
      upstreams: [],
      admin: { host: '127.0.0.1', port: 0 },
      accessLog: 'off',
      log: () => {},
    });
    try {
      assert.equal(s.limits.current, DEFAULT_LIMITS);
      s.apply({ version: 1, service: 'web', inboundProtocol: 'http', upstreams: {}, limits: { idleTimeoutMs: 5000 } });
      assert.equal(s.limits.current.idleTimeoutMs, 5000);
      assert.equal(s.limits.current.h2MaxConcurrentStreams, DEFAULT_LIMITS.h2MaxConcurrentStreams);
      assert.throws(
        () => s.apply({ version: 2, service: 'web', inboundProtocol: 'http', upstreams: {}, limits: { idleTimeoutMs: -1 } }),
        /positive whole number/,
      );
      assert.equal(s.limits.current.idleTimeoutMs, 5000);
      assert.equal(s.snapshot?.version, 1);
    } finally {
      await s.close();
    }
  });

  it('holds /metrics to 8 responses at once and 30 s each by default; a snapshot changes them, and a zero is refused', async () => {
    assert.equal(DEFAULT_LIMITS.maxConcurrentScrapes, 8);
    assert.equal(DEFAULT_LIMITS.scrapeTimeoutMs, 30_000);
    const s = new Sidecar({
      service: 'web',
      version: 'default',
      id: 'web-scrape-limits',
      kind: 'sidecar',
      control: 'http://127.0.0.1:1',
      upstreams: [],
      admin: { host: '127.0.0.1', port: 0 },
      accessLog: 'off',
      log: () => {},
    });
    try {
      s.apply({ version: 1, service: 'web', inboundProtocol: 'http', upstreams: {}, limits: { maxConcurrentScrapes: 3, scrapeTimeoutMs: 2000 } });
      assert.equal(s.limits.current.maxConcurrentScrapes, 3);
      assert.equal(s.limits.current.scrapeTimeoutMs, 2000);
      assert.throws(
        () => s.apply({ version: 2, service: 'web', inboundProtocol: 'http', upstreams: {}, limits: { scrapeTimeoutMs: 0 } }),
        /positive whole number/,
      );
      assert.equal(s.limits.current.scrapeTimeoutMs, 2000);
    } finally {
      await s.close();
    }
  });

  it('limitsWith ignores fields it does not know and keeps defaults for absent ones', () => {
    assert.equal(limitsWith(undefined), DEFAULT_LIMITS);
    assert.deepEqual(limitsWith({ h2MaxHeaderListBytes: 2048 }), { ...DEFAULT_LIMITS, h2MaxHeaderListBytes: 2048 });
  });
});
