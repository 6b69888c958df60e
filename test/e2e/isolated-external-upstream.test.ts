// `trellis up --isolate` with an ExternalService among a service's upstreams: a pod's
// interception rules redirect the virtual addresses of mesh services, and an
// ExternalService has none. The run refuses with a reason naming both (it used to die on
// an nftables rule for an empty address), and leaves no namespace behind. Linux, root,
// ip, nft, setpriv; skipped otherwise.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { TRELLIS } from '../helpers/mesh-run.js';
import { isolationMissing } from '../../src/runner/isolation/preflight.js';
import { NETNS_PREFIX, run } from '../../src/runner/isolation/network.js';

const missing = isolationMissing();
// Its own subnet, apart from the other isolated tests'.
const SUBNET = '10.217.0.0/16';

const namespaces = async (): Promise<string[]> => (await run('ip', ['netns', 'list']).catch(() => '')).split('\n').filter((l) => l.startsWith(NETNS_PREFIX));

test('trellis up --isolate refuses an ExternalService upstream, naming it, and makes nothing', {
  skip: missing.length > 0 ? `needs ${missing.join('; ')}` : false,
  timeout: 120_000,
}, async () => {
  const dir = await mkdtemp(join(tmpdir(), 'trellis-isolate-external-'));
  const before = await namespaces();
  try {
    await writeFile(
      join(dir, 'mesh.yaml'),
      `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata: { name: iso-external }
spec:
  services:
    - { name: client, protocol: tcp, upstreams: [ledger] }
---
apiVersion: trellis.dev/v1alpha1
kind: ExternalService
metadata: { name: ledger }
spec:
  hosts: [ledger.example.test]
  ports: [{ number: 7000, protocol: TCP }]
  resolution: STATIC
  endpoints: [{ address: 127.0.0.1, port: 7000 }]
`,
    );
    const out = await new Promise<{ code: number | null; text: string }>((resolve) => {
      execFile(
        process.execPath,
        [
          TRELLIS,
          'up',
          join(dir, 'mesh.yaml'),
          '--isolate',
          '--isolate-subnet',
          SUBNET,
          '--admin',
          '127.0.0.1:0',
          '--state-dir',
          join(dir, 'state'),
          '--prometheus',
          'off',
        ],
        { timeout: 100_000 },
        (err, stdout, stderr) => resolve({ code: err === null ? 0 : ((err as { code?: number }).code ?? null), text: stdout + stderr }),
      );
    });
    assert.notEqual(out.code, 0, out.text);
    assert.match(out.text, /service client lists ExternalService ledger among its upstreams, which --isolate cannot intercept yet/, out.text);
    assert.deepEqual(await namespaces(), before, 'no namespace of the run is left');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
