// `trellis up --isolate` with an ExternalService and no egress gateway: a pod has no route
// out of its namespace (and 127.0.0.1 of the host is not the pod's), so ExternalService
// calls leave through the egress gateway on the host (isolated-egress.test.ts). Without
// one the run refuses before making anything, naming the ExternalService and what to add
// to the Mesh, and leaves no namespace behind. Linux, root, ip, nft, setpriv; skipped otherwise.
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

test('trellis up --isolate refuses ExternalServices without an egress gateway, saying what to add, and makes nothing', {
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
    assert.match(out.text, /--isolate sends ExternalService calls out through the mesh's egress gateway/, out.text);
    assert.match(out.text, /the mesh names none for ledger: add `outboundTrafficPolicy: \{ egressGateway: \{ name: egress \} \}` to the Mesh's spec/, out.text);
    assert.doesNotMatch(out.text, /isolated network/, 'refused before the network was made');
    assert.deepEqual(await namespaces(), before, 'no namespace of the run is left');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
