// `trellis control --kubernetes` end to end, with real processes and the API stand-in in
// place of a cluster: the stand-in serves a Service, an EndpointSlice and the pod behind
// it; the control plane reads them with --kubeconfig; two real proxies join with their
// ServiceAccount tokens in credential files (as the injected sidecar does); a request
// to the caller's listener for backend.shop reaches the backend app over mTLS, with the
// certificate of the backend pod's ServiceAccount; the endpoint turned not-ready in its
// slice stops taking traffic; an AuthorizationPolicy created in the API makes the
// backend's proxy refuse the caller until it is deleted.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { httpService, KubeApiStandIn, type StandInObject } from '../helpers/kube-api-stand-in.js';
import { eventually } from '../helpers/eventually.js';
import { TrellisProcesses, type Proc } from '../helpers/trellis-processes.js';
import { injectedBackendPod, writeKubeconfig } from '../helpers/kubernetes-control-plane.js';

function backendSlice(appPort: number, ready: boolean): StandInObject {
  return {
    apiVersion: 'discovery.k8s.io/v1',
    kind: 'EndpointSlice',
    metadata: { name: 'backend-xyz', namespace: 'shop', labels: { 'kubernetes.io/service-name': 'backend' } },
    addressType: 'IPv4',
    ports: [{ name: 'http', port: appPort }],
    endpoints: [{ addresses: ['127.0.0.1'], conditions: { ready }, targetRef: { kind: 'Pod', name: 'backend-0', namespace: 'shop' } }],
  };
}

function get(port: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/hello', agent: false, headers: { host: 'backend.shop' } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.setTimeout(5000, () => req.destroy(new Error('timed out')));
  });
}

describe('trellis control --kubernetes with real proxies', { timeout: 120_000 }, () => {
  let api: KubeApiStandIn;
  let dir: string;
  let app: http.Server;
  let appPort: number;
  const processes = new TrellisProcesses();
  const procs = processes.procs;
  let upstreamPort = 0;

  const start = (args: string[]): Proc => processes.start(args);
  const waitFor = (p: Proc, re: RegExp, what: string): Promise<RegExpMatchArray> => processes.waitFor(p, re, what);

  before(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'trellis-k8s-e2e-'));
    processes.home = dir;
    app = http.createServer((req, res) => res.end(`backend got ${req.url} with ${req.headers['l5d-client-id'] ?? 'no id header'}`));
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    appPort = (app.address() as AddressInfo).port;

    api = await new KubeApiStandIn().start();
    api.tokens.set('web-token', { username: 'system:serviceaccount:default:web', audiences: ['trellis'] });
    api.tokens.set('backend-token', { username: 'system:serviceaccount:shop:shop-backend', audiences: ['trellis'] });
    api.apply(httpService('web', 'default', 'http'));
    api.apply(httpService('backend', 'shop', 'http'));
    const kubeconfig = path.join(dir, 'kubeconfig');
    await writeKubeconfig(api, kubeconfig);
    await writeFile(path.join(dir, 'web-token'), 'web-token\n');
    await writeFile(path.join(dir, 'backend-token'), 'backend-token\n');

    const control = start(['control', '--kubernetes', '--kubeconfig', kubeconfig, '--admin', '127.0.0.1:0', '--state-dir', path.join(dir, 'state')]);
    const url = (await waitFor(control, /listening on (http:\/\/127\.0\.0\.1:\d+)/, 'the control plane to listen'))[1]!;

    const backend = start([
      'proxy',
      ...['--service', 'backend', '--version', 'v1', '--id', 'backend-0', '--control', url],
      ...['--credential-file', path.join(dir, 'backend-token'), '--app', `127.0.0.1:${appPort}`, '--inbound', '127.0.0.1:0', '--access-log', 'off'],
    ]);
    const inbound = Number((await waitFor(backend, /inbound 127\.0\.0\.1:(\d+)/, 'the backend proxy to start'))[1]);
    // The pod as the injector makes it: its sidecar declares the inbound port it listens on.
    api.apply(injectedBackendPod(inbound, appPort));
    api.apply(backendSlice(appPort, true));

    const web = start([
      'proxy',
      ...['--service', 'web', '--id', 'web-0', '--control', url, '--credential-file', path.join(dir, 'web-token')],
      ...['--app', '127.0.0.1:9', '--inbound', '127.0.0.1:0', '--upstream', 'backend.shop=127.0.0.1:0', '--access-log', 'off'],
    ]);
    upstreamPort = Number((await waitFor(web, /backend\.shop at 127\.0\.0\.1:(\d+)/, 'the web proxy to start'))[1]);
  });

  after(async () => {
    await processes.stop();
    await api?.close();
    await new Promise((r) => app?.close(r));
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('a request through the caller proxy reaches the endpoint the EndpointSlice names, over mTLS with the ServiceAccount identity', async () => {
    const answer = await eventually(
      async () => {
        const r = await get(upstreamPort).catch(() => undefined);
        return r?.status === 200 ? r : false;
      },
      { timeoutMs: 30_000, what: 'a 200 from the backend through the mesh' },
    );
    assert.match(answer.body, /^backend got \/hello/);
    const control = procs[0]!.output;
    assert.match(control, /issued spiffe:\/\/cluster\.local\/ns\/shop\/sa\/shop-backend to sidecar backend-0/);
    assert.match(control, /issued spiffe:\/\/cluster\.local\/ns\/default\/sa\/web to sidecar web-0/);
  });

  it('an AuthorizationPolicy created in the API makes the callee’s proxy refuse the caller; deleted, the caller gets through again', async () => {
    const policy = (principal: string): StandInObject => ({
      apiVersion: 'trellis.dev/v1alpha1',
      kind: 'AuthorizationPolicy',
      metadata: { name: 'backend-callers', namespace: 'shop' },
      spec: {
        targetRefs: [{ group: '', kind: 'Service', name: 'backend' }],
        action: 'ALLOW',
        rules: [{ from: [{ source: { principals: [principal] } }] }],
      },
    });
    const status = async (): Promise<number | undefined> => (await get(upstreamPort).catch(() => undefined))?.status;
    api.apply(policy('cluster.local/ns/shop/sa/frontend'));
    await eventually(async () => (await status()) === 403, { timeoutMs: 30_000, what: 'the backend proxy to refuse web (403)' });
    api.apply(policy('cluster.local/ns/default/sa/web'));
    await eventually(async () => (await status()) === 200, { timeoutMs: 30_000, what: 'web allowed by the changed policy' });
    api.apply(policy('cluster.local/ns/shop/sa/frontend'));
    await eventually(async () => (await status()) === 403, { timeoutMs: 30_000, what: 'web refused again' });
    api.delete('trellis.dev/v1alpha1', 'AuthorizationPolicy', 'backend-callers', 'shop');
    await eventually(async () => (await status()) === 200, { timeoutMs: 30_000, what: 'web through again once the policy is deleted' });
  });

  it('an endpoint its slice marks not ready takes no more requests', async () => {
    api.apply(backendSlice(appPort, false));
    const answer = await eventually(
      async () => {
        const r = await get(upstreamPort).catch(() => undefined);
        return r !== undefined && r.status !== 200 ? r : false;
      },
      { timeoutMs: 30_000, what: 'the backend to leave the snapshot' },
    );
    assert.equal(answer.status, 503);
  });
});
