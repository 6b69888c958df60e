// The injection webhook (src/k8s/webhook.ts) over HTTPS with real AdmissionReview v1
// requests built from real pod specs: each answer's JSON Patch is applied with
// fast-json-patch (RFC 6902) and the patched pod checked and validated against the
// Kubernetes OpenAPI schema; then hostile input: not JSON, not a review, too large.
import assert from 'node:assert/strict';
import { request } from 'node:https';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import jsonpatch from 'fast-json-patch';
import { Pod } from 'kubernetes-models/v1';
import { INJECTED_ANNOTATION, injectPod, type K8sPod, SIDECAR_NAME } from '../../src/k8s/inject.js';
import { answerAdmission, createInjectionWebhook } from '../../src/k8s/webhook.js';
import { makeLeaf, makeRoot } from '../helpers/test-pki.js';
import { admissionReview, deploymentPod, optedOut, podWithInit, statefulSetPod } from './fixtures.js';

interface Answer {
  apiVersion?: string;
  kind?: string;
  error?: string;
  response: { uid: string; allowed: boolean; patchType?: string; patch?: string };
}

let server: ReturnType<typeof createInjectionWebhook>;
let port = 0;
let ca = '';

before(async () => {
  const root = await makeRoot('webhook test CA');
  const leaf = await makeLeaf({ root, trust: [root] });
  ca = root.pem;
  server = createInjectionWebhook({ cert: leaf.material.cert, key: leaf.material.key, maxBodyBytes: 64 * 1024 });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
});

after(() => new Promise<void>((resolve) => server.close(() => resolve())));

function post(body: string | Buffer, path = '/inject', method = 'POST'): Promise<{ status: number; json: Answer }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: '127.0.0.1', port, path, method, ca, checkServerIdentity: () => undefined, headers: { 'content-type': 'application/json' } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString('utf8')) }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** Sends the review, checks the response envelope, applies its patch; returns the pod as the apiserver would store it. */
async function admit(pod: K8sPod): Promise<{ pod: K8sPod; patched: boolean }> {
  const review = admissionReview(pod, 'shop', 'uid-1');
  const { status, json } = await post(JSON.stringify(review));
  assert.equal(status, 200);
  assert.equal(json.apiVersion, 'admission.k8s.io/v1');
  assert.equal(json.kind, 'AdmissionReview');
  assert.equal(json.response.uid, 'uid-1');
  assert.equal(json.response.allowed, true, 'the webhook never refuses a pod');
  if (json.response.patch === undefined) return { pod, patched: false };
  assert.equal(json.response.patchType, 'JSONPatch');
  const ops = JSON.parse(Buffer.from(json.response.patch, 'base64').toString('utf8'));
  assert.equal(jsonpatch.validate(ops, structuredClone(pod)), undefined, 'a valid RFC 6902 patch for this pod');
  const patched = jsonpatch.applyPatch(structuredClone(pod), ops, true, false).newDocument as K8sPod;
  new Pod(patched as never).validate();
  return { pod: patched, patched: true };
}

test("a Deployment's pod: the patch gives what injectPod gives", async () => {
  const pod = deploymentPod();
  const { pod: patched, patched: changed } = await admit(pod);
  assert.ok(changed);
  const expected = injectPod({ ...pod, metadata: { ...pod.metadata, namespace: 'shop' } });
  assert.ok(expected.injected);
  assert.deepEqual(patched.spec, expected.pod.spec);
  assert.equal(patched.metadata?.annotations?.[INJECTED_ANNOTATION], SIDECAR_NAME);
  assert.equal(patched.metadata?.namespace, undefined, 'the patch does not set the namespace; the apiserver does');
});

test('a StatefulSet pod and a pod with its own init containers', async () => {
  const sts = await admit(statefulSetPod());
  assert.deepEqual(
    sts.pod.spec?.initContainers?.map((c) => c.name),
    ['trellis-init', SIDECAR_NAME],
  );
  const withInit = await admit(podWithInit());
  assert.deepEqual(
    withInit.pod.spec?.initContainers?.map((c) => c.name),
    ['trellis-init', SIDECAR_NAME, 'wait-for-backend'],
  );
});

test('an opted-out pod and an injected pod are allowed without a patch', async () => {
  assert.equal((await admit(optedOut())).patched, false);
  const once = await admit(deploymentPod());
  const twice = await admit(once.pod);
  assert.equal(twice.patched, false, 'a pod already injected is not injected twice');
});

test('reviews it cannot use are allowed unchanged; bodies that are not reviews are 400', async () => {
  const notPod = admissionReview(deploymentPod()) as { request: Record<string, unknown> };
  notPod.request.kind = { group: 'apps', version: 'v1', kind: 'Deployment' };
  assert.deepEqual(answerAdmission(JSON.stringify(notPod)).body, {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    response: { uid: '705ab4f5-6393-11e8-b7cc-42010a800002', allowed: true },
  });
  const update = admissionReview(deploymentPod()) as { request: Record<string, unknown> };
  update.request.operation = 'UPDATE';
  assert.equal((answerAdmission(JSON.stringify(update)).body as Answer).response.patch, undefined);
  const broken = admissionReview(deploymentPod()) as { request: Record<string, unknown> };
  broken.request.object = { spec: { containers: [null, 7, { name: 'x', ports: 'many' }] } };
  assert.equal(answerAdmission(JSON.stringify(broken)).status, 200, 'a pod injection cannot read is let through');

  for (const body of [
    '',
    '{',
    'null',
    '[]',
    '"x"',
    '{"kind":"AdmissionReview"}',
    '{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{}}',
  ]) {
    const { status, json } = await post(body);
    assert.equal(status, 400, body);
    assert.equal(typeof json.error, 'string');
  }
});

test('a body over the limit is 413, other paths and methods are refused, and the server keeps serving', async () => {
  const big = Buffer.alloc(100 * 1024, 0x20);
  assert.equal((await post(big)).status, 413);
  assert.equal((await post('{}', '/other')).status, 404);
  assert.equal((await post('', '/inject', 'GET')).status, 405);
  assert.equal((await admit(deploymentPod())).patched, true, 'still serving');
});
