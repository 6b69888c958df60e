// The API stand-in's status subresource behaves as kube-apiserver's does for a CRD with
// `subresources.status` (the Gateway API routes): a status PUT or merge PATCH changes only
// status, moves the resourceVersion and not the generation, and watchers see MODIFIED; a
// stale resourceVersion is 409; a write of the object leaves status alone; a spec change
// moves the generation.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { KubeApiStandIn } from '../helpers/kube-api-stand-in.js';

const BASE = '/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/r';

describe('the stand-in’s status subresource', () => {
  let api: KubeApiStandIn;
  before(async () => {
    api = await new KubeApiStandIn().start();
    api.apply({
      apiVersion: 'gateway.networking.k8s.io/v1',
      kind: 'HTTPRoute',
      metadata: { name: 'r', namespace: 'shop' },
      spec: { parentRefs: [{ name: 'a' }] },
    });
  });
  after(async () => {
    await api?.close();
  });

  const call = async (method: string, path: string, body?: unknown, type = 'application/json') => {
    const res = await fetch(`${api.url}${path}`, { method, headers: { 'content-type': type }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    return { status: res.status, body: (await res.json()) as { metadata: { resourceVersion: string; generation: number }; spec: unknown; status?: unknown } };
  };

  it('PUT and merge PATCH change status only, keep the generation; stale is 409', async () => {
    const before = (await call('GET', BASE)).body;
    assert.equal(before.metadata.generation, 1);
    const put = await call('PUT', `${BASE}/status`, { ...before, spec: { parentRefs: [{ name: 'changed' }] }, status: { parents: [{ controllerName: 'x' }] } });
    assert.equal(put.status, 200);
    assert.deepEqual(put.body.spec, { parentRefs: [{ name: 'a' }] }, 'a status write does not touch spec');
    assert.deepEqual(put.body.status, { parents: [{ controllerName: 'x' }] });
    assert.equal(put.body.metadata.generation, 1);
    assert.notEqual(put.body.metadata.resourceVersion, before.metadata.resourceVersion);
    assert.equal((await call('PUT', `${BASE}/status`, { ...before, status: {} })).status, 409);
    const patch = await call('PATCH', `${BASE}/status`, { status: { parents: [{ controllerName: 'y' }], extra: 1 } }, 'application/merge-patch+json');
    assert.equal(patch.status, 200);
    assert.deepEqual(patch.body.status, { parents: [{ controllerName: 'y' }], extra: 1 });
    assert.equal(patch.body.metadata.generation, 1);
    assert.equal((await call('PATCH', `${BASE}/status`, { status: {} }, 'application/json')).status, 415);
    assert.equal((await call('PUT', '/apis/gateway.networking.k8s.io/v1/namespaces/shop/httproutes/none/status', before)).status, 404);
  });

  it('a write of the object leaves status alone and moves the generation when spec changes', async () => {
    const current = (await call('GET', BASE)).body;
    const put = await call('PUT', BASE, { ...current, spec: { parentRefs: [{ name: 'b' }] }, status: { parents: [] } });
    assert.equal(put.status, 200);
    assert.deepEqual(put.body.status, current.status);
    assert.equal(put.body.metadata.generation, 2);
  });
});
