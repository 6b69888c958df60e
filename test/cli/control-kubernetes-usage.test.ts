// `trellis control` usage around --kubernetes: --kubeconfig alone, or a kubeconfig that
// cannot be read, are usage errors (exit 2 with the reason), not a control plane started
// without its cluster; with neither a config nor --kubernetes it still asks for a config.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { TRELLIS } from '../helpers/mesh-run.js';

function trellis(args: string[]): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [TRELLIS, ...args], { timeout: 30_000 }, (err, _stdout, stderr) =>
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr }),
    );
  });
}

test('--kubeconfig without --kubernetes is a usage error', async () => {
  const r = await trellis(['control', '--kubeconfig', '/nonexistent/kubeconfig', '--admin', '127.0.0.1:0']);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /--kubeconfig goes with --kubernetes/);
});

test('a kubeconfig that cannot be read is a usage error naming it', async () => {
  const r = await trellis(['control', '--kubernetes', '--kubeconfig', '/nonexistent/kubeconfig', '--admin', '127.0.0.1:0']);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /--kubernetes: no usable kubeconfig .*nonexistent/);
});

test('without --kubernetes a config is still required', async () => {
  const r = await trellis(['control', '--admin', '127.0.0.1:0']);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /no config given/);
});
