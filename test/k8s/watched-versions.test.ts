// The Gateway API versions the Kubernetes source lists, watches and writes status at are
// ones the install's vendored CRDs (deploy/kubernetes/gateway-api) serve: a version the
// CRD no longer serves (TCPRoute and TLSRoute v1alpha2 since Gateway API v1.5/v1.6) lists
// 404 forever. Failed before: WATCHED_KINDS had TCPRoute and TLSRoute at v1alpha2.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { parse } from 'yaml';
import { WATCHED_KINDS } from '../../src/k8s/source/kinds.js';
import { STATUS_ROUTE_KINDS } from '../../src/k8s/source/route-status.js';
import { RESOURCE_KINDS_READ } from '../../src/control/sources/kubernetes-resources.js';
import { ROOT } from '../config/helpers.js';

/** plural → the versions its CRD serves. */
async function served(plural: string): Promise<string[]> {
  const crd = parse(await readFile(join(ROOT, 'deploy/kubernetes/gateway-api', `gateway.networking.k8s.io_${plural}.yaml`), 'utf8')) as {
    spec: { versions: { name: string; served: boolean }[] };
  };
  return crd.spec.versions.filter((v) => v.served).map((v) => v.name);
}

describe('Gateway API versions read and written', () => {
  it('every Gateway API path of the source is at a version the installed CRD serves', async () => {
    const paths = [...Object.values(WATCHED_KINDS), ...RESOURCE_KINDS_READ].map((k) => k.path).filter((p) => p.includes('/gateway.networking.k8s.io/'));
    for (const p of paths) {
      const [, version, plural] = /^\/apis\/gateway\.networking\.k8s\.io\/([^/]+)\/([a-z]+)$/.exec(p)!;
      assert.ok((await served(plural!)).includes(version!), `${p}: ${plural} is served at ${(await served(plural!)).join(', ')}`);
    }
  });

  it('route status is written at a served version', async () => {
    for (const [kind, k] of Object.entries(STATUS_ROUTE_KINDS)) assert.ok((await served(k.plural)).includes(k.version), kind);
  });
});
