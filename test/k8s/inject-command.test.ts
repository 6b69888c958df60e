// `trellis inject -f` and `trellis pod-init --dry-run` end to end: the real CLI in a
// child process, multi-document YAML on stdin and in a file.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseAllDocuments, stringify } from 'yaml';
import { podInitRuleset, SIDECAR_NAME } from '../../src/k8s/inject.js';
import { DEPLOYMENT, optedOut, STATEFUL_SET } from './fixtures.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'trellis-inject-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function trellis(args: string[], input?: string) {
  return spawnSync(process.execPath, [join(ROOT, 'bin/trellis.js'), ...args], { encoding: 'utf8', input });
}

const SERVICE = {
  apiVersion: 'v1',
  kind: 'Service',
  metadata: { name: 'backend', namespace: 'shop' },
  spec: { selector: { app: 'backend' }, ports: [{ port: 8080 }] },
};
const MANIFESTS = [DEPLOYMENT, SERVICE, STATEFUL_SET, optedOut()].map((d) => stringify(d)).join('---\n');

test('trellis inject -f - injects every workload in a multi-document stream and passes the rest through', () => {
  const r = trellis(['inject', '-f', '-'], MANIFESTS);
  assert.equal(r.status, 0, r.stderr);
  const docs = parseAllDocuments(r.stdout).map((d) => d.toJS());
  assert.deepEqual(
    docs.map((d) => d.kind),
    ['Deployment', 'Service', 'StatefulSet', 'Pod'],
  );
  assert.equal(docs[0].spec.template.spec.initContainers[1].name, SIDECAR_NAME);
  assert.equal(docs[2].spec.template.spec.initContainers[1].name, SIDECAR_NAME);
  assert.deepEqual(docs[1], SERVICE);
  assert.equal(docs[3].spec.initContainers, undefined, 'the opted-out pod is left alone');
  assert.match(r.stderr, /Pod debug left as it is: opted-out/);
  const again = trellis(['inject', '-f', '-'], r.stdout);
  assert.equal(again.stdout, r.stdout, 'injecting the output again changes nothing');
});

test('trellis inject -f FILE, flags, and bad input', () => {
  const file = join(dir, 'deploy.yaml');
  writeFileSync(file, stringify(DEPLOYMENT));
  const r = trellis(['inject', '-f', file, '--image', 'registry.example/trellis:dev']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /image: registry\.example\/trellis:dev/);
  assert.equal(trellis(['inject']).status, 2, 'no -f is a usage error');
  const bad = trellis(['inject', '-f', '-'], 'kind: Pod\n  bad: [\n');
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /document 1/);
});

test('trellis pod-init --dry-run prints the ruleset podInitRuleset makes', () => {
  const r = trellis(['pod-init', '--ports', '8080,9090', '--dry-run']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, podInitRuleset([8080, 9090]));
  assert.equal(trellis(['pod-init', '--ports', '8080,x', '--dry-run']).status, 2);
  assert.equal(trellis(['pod-init', '--ports', '8080', '--dns', '--dry-run']).stdout, podInitRuleset([8080], { dns: true }));
});
