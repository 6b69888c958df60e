// Two control plane replicas elect one leader through a Lease on the API stand-in: one
// leads, the other waits; the standby takes over only once the leader stops renewing for
// the lease duration; racing for an expired lease, exactly one wins (409 for the other).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { KubeApiStandIn } from '../helpers/kube-api-stand-in.js';
import { LeaderElector, leaseApiWith } from '../../src/k8s/source/leader-election.js';

describe('leader election', () => {
  let api: KubeApiStandIn;
  let clock = Date.parse('2026-01-01T00:00:00Z');
  const now = (): number => clock;
  let a: LeaderElector;
  let b: LeaderElector;

  before(async () => {
    api = await new KubeApiStandIn().start();
    const mk = (identity: string): LeaderElector =>
      new LeaderElector({
        api: leaseApiWith(api.kubeConfig(), 'trellis-system', 'trellis-control'),
        namespace: 'trellis-system',
        name: 'trellis-control',
        identity,
        leaseDurationSeconds: 15,
        now,
      });
    a = mk('control-a');
    b = mk('control-b');
  });
  after(() => api?.close());

  it('one replica leads, the other waits while the lease is renewed', async () => {
    assert.equal(await a.tick(), true);
    assert.equal(await b.tick(), false);
    clock += 10_000;
    assert.equal(await a.tick(), true);
    clock += 10_000;
    assert.equal(await b.tick(), false, 'renewed 10 s ago: not expired');
  });

  it('the standby takes over once the leader stops renewing, and the old leader then steps down', async () => {
    clock += 16_000;
    assert.equal(await b.tick(), true);
    assert.equal(await a.tick(), false);
    assert.equal(a.leading, false);
    assert.equal(b.leading, true);
  });

  it('of two replicas racing for an expired lease exactly one wins', async () => {
    clock += 60_000;
    const c = new LeaderElector({
      api: leaseApiWith(api.kubeConfig(), 'trellis-system', 'trellis-control'),
      namespace: 'trellis-system',
      name: 'trellis-control',
      identity: 'control-c',
      now,
    });
    const results = await Promise.all([a.tick(), c.tick()]);
    assert.equal(results.filter(Boolean).length, 1, `results ${results}`);
  });
});
