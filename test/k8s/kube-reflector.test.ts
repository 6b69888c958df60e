// The reflector against the API stand-in, through @kubernetes/client-node's Watch: its
// store must end up exactly the server's objects whatever happens to the watch (ended,
// cut, 410 ERROR event, compacted history, held and reordered events), with no object
// reported twice or lost on the way.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { KubeApiStandIn, type StandInObject } from '../helpers/kube-api-stand-in.js';
import { eventually } from '../helpers/eventually.js';
import { Reflector, kubeTransport, objectKey, type StoreChange } from '../../src/k8s/source/reflector.js';
import { WATCHED_KINDS } from '../../src/k8s/source/kinds.js';

function slice(name: string, addresses: string[], ready = true): StandInObject {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name, namespace: 'shop', labels: { 'kubernetes.io/service-name': 'cart' } },
    addressType: 'IPv4',
    endpoints: addresses.map((a) => ({ addresses: [a], conditions: { ready } })),
    ports: [{ name: 'http', port: 8080, protocol: 'TCP' }],
  };
}

describe('kube reflector', () => {
  let api: KubeApiStandIn;
  let reflector: Reflector;
  /** Every change the reflector reported, folded into a map: must equal the server's state. */
  const seen = new Map<string, string>();
  const problems: string[] = [];

  before(async () => {
    api = await new KubeApiStandIn().start();
    for (let i = 0; i < 7; i++) api.apply(slice(`cart-${i}`, [`10.0.0.${i}`]));
    const { list, watch } = kubeTransport(api.kubeConfig());
    reflector = new Reflector({
      kind: WATCHED_KINDS.EndpointSlice,
      list,
      watch,
      pageSize: 3,
      backoffMs: { initial: 5, max: 50 },
      onChange: (changes: readonly StoreChange[]) => {
        for (const c of changes) {
          const key = objectKey(c.object);
          if (c.type === 'added' && seen.has(key)) problems.push(`added twice: ${key}`);
          if (c.type !== 'added' && !seen.has(key)) problems.push(`${c.type} unknown: ${key}`);
          if (c.type === 'deleted') seen.delete(key);
          else seen.set(key, String(c.object.metadata?.resourceVersion));
        }
      },
    });
    reflector.start();
  });
  after(async () => {
    reflector?.stop();
    await api?.close();
  });

  const serverState = async (): Promise<Map<string, string>> => {
    const { list } = kubeTransport(api.kubeConfig());
    const page = await list(WATCHED_KINDS.EndpointSlice.path, { limit: 1000 });
    return new Map((page.items ?? []).map((o) => [objectKey(o), String(o.metadata?.resourceVersion)]));
  };
  const converged = async (): Promise<void> => {
    const want = await serverState();
    await eventually(() => {
      assert.deepEqual(new Map(reflector.list().map((o) => [objectKey(o), String(o.metadata?.resourceVersion)])), want);
      assert.deepEqual(seen, want);
    });
    assert.deepEqual(problems, []);
  };

  it('lists in pages with continue, then watches with bookmarks from the list resourceVersion', async () => {
    await converged();
    assert.ok(
      api.requests.some((r) => r.includes('continue=')),
      'a second page was asked for',
    );
    await eventually(() => api.requests.some((r) => r.includes('watch=true') && r.includes('allowWatchBookmarks=true')));
  });

  it('follows ADDED, MODIFIED and DELETED', async () => {
    await eventually(() => api.openWatches === 1);
    api.apply(slice('cart-7', ['10.0.0.7']));
    api.apply(slice('cart-1', ['10.0.0.1', '10.0.1.1']));
    api.delete('discovery.k8s.io/v1', 'EndpointSlice', 'cart-2', 'shop');
    await converged();
  });

  it('moves its resourceVersion on a bookmark', async () => {
    await eventually(() => api.openWatches === 1);
    api.apply({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'other', namespace: 'shop' } });
    api.bookmark();
    await eventually(() => reflector.resourceVersion === String(api.resourceVersion));
  });

  it('resumes an ended watch from its resourceVersion without a re-list', async () => {
    await eventually(() => api.openWatches === 1);
    const lists = reflector.counters.lists;
    api.endWatches();
    api.apply(slice('cart-8', ['10.0.0.8']));
    await converged();
    assert.equal(reflector.counters.lists, lists);
  });

  it('resumes a cut watch, missing none of the changes made while it was down', async () => {
    await eventually(() => api.openWatches === 1);
    api.breakWatches();
    api.apply(slice('cart-9', ['10.0.0.9']));
    api.delete('discovery.k8s.io/v1', 'EndpointSlice', 'cart-3', 'shop');
    await converged();
  });

  it('re-lists after a 410 ERROR event, reporting only what changed', async () => {
    await eventually(() => api.openWatches === 1);
    const lists = reflector.counters.lists;
    api.hold();
    api.apply(slice('cart-4', ['10.0.0.44']));
    api.delete('discovery.k8s.io/v1', 'EndpointSlice', 'cart-5', 'shop');
    api.compact();
    api.expireWatches();
    await converged();
    assert.ok(reflector.counters.lists > lists);
    assert.ok(reflector.counters.gone >= 1);
  });

  it('re-lists when the watch itself is answered 410 Gone (history compacted while it was away)', async () => {
    await eventually(() => api.openWatches === 1);
    const gone = reflector.counters.gone;
    api.breakWatches();
    api.apply(slice('cart-10', ['10.0.0.10']));
    api.compact();
    await converged();
    // The cut watch may have resumed before the compaction; either way the state is right.
    assert.ok(reflector.counters.gone >= gone);
  });

  it('ends up right when held events arrive reordered and the watch is then cut', async () => {
    await eventually(() => api.openWatches === 1);
    api.hold();
    api.apply(slice('cart-11', ['10.0.0.11']));
    api.apply(slice('cart-11', ['10.0.0.11', '10.0.0.12']));
    api.delete('discovery.k8s.io/v1', 'EndpointSlice', 'cart-11', 'shop');
    api.apply(slice('cart-12', ['10.0.0.13']));
    // Delivered backwards: the store is briefly wrong; the cut and re-sync from the
    // last resourceVersion seen (the highest) must not be trusted blindly, so compact and expire.
    api.release();
    api.compact();
    api.expireWatches();
    await converged();
  });
});
