// `trellis bench` names the bottleneck of a real mesh: a three-service chain under
// `trellis up` (a calls b calls c) where c serves one request at a time, 20 ms each
// (50 req/s at most). A short sweep through the ingress to a must name c, in the table,
// the summary, the JSON and the HTML report.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { meshUp, REPO, TRELLIS, type RunningMesh } from '../helpers/mesh-run.js';

const APP = join(REPO, 'test', 'fixtures', 'apps', 'chain-server.js');

let dir: string;
let mesh: RunningMesh | undefined;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'trellis-bottleneck-'));
  const health = '{ http: { path: /healthz }, interval: 300ms, timeout: 300ms }';
  await writeFile(
    join(dir, 'mesh.yaml'),
    `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata:
  name: chain
spec:
  services:
    - name: a
      command: node ${APP}
      env: { CHAIN_UPSTREAM: b }
      upstreams: [b]
      public: {}
      health: ${health}
    - name: b
      command: node ${APP}
      env: { CHAIN_UPSTREAM: c }
      upstreams: [c]
      health: ${health}
    - name: c
      command: node ${APP}
      env: { CHAIN_DELAY_MS: "20" }
      health: ${health}
`,
  );
  mesh = await meshUp(join(dir, 'mesh.yaml'), join(dir, '.trellis'), ['--free-ports'], 20_000);
});

after(async () => {
  await mesh?.stop();
  await rm(dir, { recursive: true, force: true });
});

function bench(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [TRELLIS, 'bench', ...args], { cwd: REPO, timeout: 25_000, encoding: 'utf8' }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

interface HopJson {
  service: string;
  role: string;
  requests: number;
  insideMs: number;
  share: number | null;
  sidecarCores: number | null;
  appCores: number | null;
}

describe('bottleneck', () => {
  it('names the slowed service of a three-service chain', async () => {
    const report = join(dir, 'report.html');
    const r = await bench(
      'a',
      '--control',
      mesh!.state.control,
      '--json',
      '--start-rate',
      '20',
      '--step-duration',
      '1s',
      '--warmup',
      '200ms',
      '--max-steps',
      '4',
      '--timeout',
      '2s',
      '--report',
      report,
    );
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout) as {
      steps: { step: number; rate: number; ok: boolean; hops: { e2eMs: number | null; services: HopJson[] } | null }[];
      bottleneck: { service: string; reason: string } | null;
    };
    const trace = j.steps
      .map((s) => `${s.rate} ${s.ok ? 'ok' : 'over'}: ${s.hops?.services.map((h) => `${h.service} ${h.insideMs} ms`).join(', ')}`)
      .join('; ');
    assert.equal(j.bottleneck?.service, 'c', trace);
    for (const s of j.steps) {
      assert.deepEqual(
        s.hops?.services.map((h) => `${h.service} ${h.role}`).sort(),
        ['a service', 'b service', 'c service', 'trellis-ingress entry'],
        `every hop is accounted at step ${s.step}`,
      );
      const c = s.hops!.services.find((h) => h.service === 'c')!;
      assert.ok(c.insideMs >= 15, `c spends its 20 ms inside at step ${s.step} (${trace})`);
      assert.ok(c.sidecarCores !== null && c.sidecarCores >= 0);
      if (process.platform === 'linux') assert.ok(c.appCores !== null && c.appCores >= 0, "the app's CPU is read from /proc");
    }
    const html = await readFile(report, 'utf8');
    assert.match(html, /bottleneck: c \(/);
    assert.match(html, /<table class="hops">/);
  });

  it('prints the slowest hop under each step and the bottleneck in the summary', async () => {
    const r = await bench(
      'a',
      '--control',
      mesh!.state.control,
      '--start-rate',
      '20',
      '--max-rate',
      '20',
      '--step-duration',
      '500ms',
      '--warmup',
      '0s',
      '--no-report',
    );
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /\n +1 +exponential +20\.0 .*\n +slowest hop: c [\d.]+ ms \(\d+%.*\); then /);
    assert.match(r.stdout, /\nbottleneck: c \(time inside [\d.]+ ms per request at 20 req\/s/);
  });
});
