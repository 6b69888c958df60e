// `trellis check --kubernetes`'s cluster checks against the API stand-in: every check
// fails on an empty cluster, and passes once the CRDs, the webhook configuration and a
// fresh leader Lease are there.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { KubeApiStandIn } from '../helpers/kube-api-stand-in.js';
import { TRELLIS_CRD_KINDS, checkCluster, crdName } from '../../src/k8s/source/cluster-checks.js';
import { LeaderElector, leaseApiWith } from '../../src/k8s/source/leader-election.js';

describe('cluster checks', () => {
  let api: KubeApiStandIn;
  before(async () => {
    api = await new KubeApiStandIn().start();
  });
  after(() => api?.close());

  it('names what is missing on an empty cluster', async () => {
    const r = await checkCluster(api.kubeConfig());
    assert.deepEqual(
      r.map((c) => c.level),
      ['ok', 'fail', 'fail', 'fail'],
    );
    assert.ok(r[1]!.details.includes('retrypolicies.trellis.dev'));
  });

  it('passes with the CRDs, the webhook configuration and a held lease', async () => {
    for (const kind of TRELLIS_CRD_KINDS)
      api.apply({ apiVersion: 'apiextensions.k8s.io/v1', kind: 'CustomResourceDefinition', metadata: { name: crdName(kind) } });
    api.apply({ apiVersion: 'admissionregistration.k8s.io/v1', kind: 'MutatingWebhookConfiguration', metadata: { name: 'trellis-sidecar-injector' } });
    const elector = new LeaderElector({
      api: leaseApiWith(api.kubeConfig(), 'trellis-system', 'trellis-control'),
      namespace: 'trellis-system',
      name: 'trellis-control',
      identity: 'control-a',
    });
    assert.equal(await elector.tick(), true);
    const r = await checkCluster(api.kubeConfig());
    assert.deepEqual(
      r.map((c) => c.level),
      ['ok', 'ok', 'ok', 'ok'],
      JSON.stringify(r),
    );
  });

  it('fails when the API cannot be reached', async () => {
    const kc = api.kubeConfig();
    kc.loadFromOptions({ ...JSON.parse(kc.exportConfig()), clusters: [{ name: 'stand-in', server: 'http://127.0.0.1:1', skipTLSVerify: true }] });
    const r = await checkCluster(kc);
    assert.equal(r[0]!.level, 'fail');
  });
});
