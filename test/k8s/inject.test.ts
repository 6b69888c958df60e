// Sidecar injection (src/k8s/inject.ts) on real pod specs: what the pod gets, in which
// order, its probes rewritten, idempotence, opt-out; every injected pod validated against
// the Kubernetes OpenAPI schemas (kubernetes-models), and the init step's rules the
// isolation mode's (one function).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Pod } from 'kubernetes-models/v1';
import { Deployment, StatefulSet } from 'kubernetes-models/apps/v1';
import { CronJob, Job } from 'kubernetes-models/batch/v1';
import { podRuleset } from '../../src/interception/nft-rules.js';
import { APP_PROBES_ENV, INIT_NAME, injectManifest, injectPod, type K8sContainer, type K8sPod, podInitRuleset, SIDECAR_NAME } from '../../src/k8s/inject.js';
import { DEPLOYMENT, deploymentPod, optedOut, podWithInit, STATEFUL_SET, statefulSetPod } from './fixtures.js';

/** The value at a dotted path (numbers index arrays): reads a loosely typed manifest in a test. */
function at(o: unknown, path: string): unknown {
  let v: unknown = o;
  for (const k of path.split('.')) v = v === null || typeof v !== 'object' ? undefined : (v as Record<string, unknown>)[k];
  return v;
}

function injected(pod: K8sPod): K8sPod {
  const r = injectPod(pod);
  assert.ok(r.injected, `expected injection, got ${r.injected ? '' : r.reason}`);
  return r.pod;
}

const named = (pod: K8sPod, name: string): K8sContainer | undefined =>
  [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].find((c) => c.name === name);

test('a Deployment pod gets the init step and a native sidecar, and stays a valid Pod', () => {
  const pod = injected({ ...deploymentPod(), metadata: { ...deploymentPod().metadata, namespace: 'shop' } });
  new Pod(pod as never).validate();
  const names = pod.spec?.initContainers?.map((c) => c.name);
  assert.deepEqual(names, [INIT_NAME, SIDECAR_NAME]);
  const proxy = named(pod, SIDECAR_NAME) as unknown;
  assert.equal(at(proxy, 'restartPolicy'), 'Always', 'a native sidecar');
  assert.equal(at(proxy, 'securityContext.runAsUser'), 1337);
  assert.equal(at(proxy, 'securityContext.runAsNonRoot'), true);
  assert.equal(at(proxy, 'securityContext.allowPrivilegeEscalation'), false);
  assert.ok(at(proxy, 'resources.requests.cpu') && at(proxy, 'resources.limits.memory'));
  for (const p of ['startupProbe', 'readinessProbe', 'livenessProbe']) assert.equal(at(proxy, `${p}.httpGet.port`), 15020, p);
  assert.equal(at(proxy, 'livenessProbe.httpGet.path'), '/live');
  assert.equal(at(proxy, 'readinessProbe.httpGet.path'), '/ready');
  const args = at(proxy, 'args') as string[];
  assert.deepEqual(args.slice(0, 5), ['proxy', '--service', 'backend', '--version', 'v1']);
  assert.equal(args[args.indexOf('--credential-file') + 1], '/var/run/secrets/trellis/token');
  assert.equal(args[args.indexOf('--control') + 1], 'http://trellis-control.trellis-system.svc:15000');
  assert.equal(args[args.indexOf('--port') + 1], '8080=127.0.0.1:8080,0.0.0.0:15006');
  assert.deepEqual(at(proxy, 'volumeMounts'), [{ name: 'trellis-token', mountPath: '/var/run/secrets/trellis', readOnly: true }]);
  const volume = pod.spec?.volumes?.find((v) => v.name === 'trellis-token') as unknown;
  assert.deepEqual(at(volume, 'projected.sources'), [{ serviceAccountToken: { audience: 'trellis', expirationSeconds: 3600, path: 'token' } }]);
  assert.ok(
    pod.spec?.volumes?.some((v) => v.name === 'cache'),
    'the pod keeps its own volumes',
  );
  const init = named(pod, INIT_NAME) as unknown;
  assert.deepEqual(at(init, 'securityContext.capabilities'), { drop: ['ALL'], add: ['NET_ADMIN'] });
  assert.deepEqual(at(init, 'args'), ['pod-init', '--ports', '8080', '--dns']);
  assert.equal(args[args.indexOf('--dns-listen') + 1], '127.0.0.1:15053', 'the DNS responder the init step redirects port 53 to');
  assert.deepEqual(
    (at(proxy, 'ports') as { name: string; containerPort: number; protocol: string }[]).filter((p) => p.containerPort === 15053).map((p) => p.protocol),
    ['UDP', 'TCP'],
  );
  assert.deepEqual(
    at(pod, 'spec.securityContext.sysctls'),
    [{ name: 'net.ipv4.ip_unprivileged_port_start', value: '0' }],
    "the sidecar may listen on a service's port 80 at its 127.255.x.y",
  );
  assert.equal(at(init, 'restartPolicy'), undefined, 'the init step runs once');
});

test("the app's HTTP probes go through the sidecar's /app-health; the originals travel to it", () => {
  const pod = injected(deploymentPod());
  const app = named(pod, 'backend') as unknown;
  assert.deepEqual(at(app, 'readinessProbe'), { httpGet: { path: '/app-health/backend/readiness', port: 15020, scheme: 'HTTP' }, periodSeconds: 5 });
  assert.equal(at(app, 'livenessProbe.httpGet.path'), '/app-health/backend/liveness');
  assert.equal(at(app, 'livenessProbe.initialDelaySeconds'), 3, 'timings are kept');
  const env = (named(pod, SIDECAR_NAME)?.env ?? []).find((e) => e.name === APP_PROBES_ENV) as { value: string };
  assert.deepEqual(JSON.parse(env.value), {
    '/app-health/backend/readiness': { httpGet: { path: '/healthz', port: 8080, scheme: 'HTTP' } },
    '/app-health/backend/liveness': { httpGet: { path: '/livez', port: 8080, scheme: 'HTTP' } },
  });
  const stateful = injected(statefulSetPod());
  assert.deepEqual(named(stateful, 'postgres')?.readinessProbe, { exec: { command: ['pg_isready'] } }, 'exec probes run in the container: unchanged');
});

test("a pod's own init containers run after the proxy has started, so they can use the mesh", () => {
  const pod = injected(podWithInit());
  new Pod(pod as never).validate();
  assert.deepEqual(
    pod.spec?.initContainers?.map((c) => c.name),
    [INIT_NAME, SIDECAR_NAME, 'wait-for-backend'],
  );
  const proxyArgs = named(pod, SIDECAR_NAME)?.args as string[];
  assert.ok(
    proxyArgs.includes('80=127.0.0.1:80,0.0.0.0:15006') && proxyArgs.includes('9113=127.0.0.1:9113,0.0.0.0:15007'),
    'one inbound listener per app port',
  );
  assert.equal(named(pod, 'frontend')?.startupProbe?.httpGet?.path, '/app-health/frontend/startup');
});

test('injection is idempotent, and an opted-out or hostNetwork pod is left alone', () => {
  const once = injected(deploymentPod());
  assert.deepEqual(injectPod(once), { injected: false, reason: 'already-injected' });
  const byName = structuredClone(deploymentPod());
  byName.spec?.containers.push({ name: SIDECAR_NAME, image: 'x' });
  assert.deepEqual(injectPod(byName), { injected: false, reason: 'already-injected' }, 'a sidecar added by hand counts');
  assert.deepEqual(injectPod(optedOut()), { injected: false, reason: 'opted-out' });
  const host = deploymentPod();
  (host.spec as Record<string, unknown>).hostNetwork = true;
  assert.deepEqual(injectPod(host), { injected: false, reason: 'host-network' });
  const input = deploymentPod();
  const before = JSON.stringify(input);
  injectPod(input);
  assert.equal(JSON.stringify(input), before, 'the input is not changed');
});

test("the init step's rules are the isolation mode's ruleset (one function)", () => {
  assert.equal(
    podInitRuleset([80, 9113]),
    podRuleset({
      table: 'trellis',
      sidecarUid: 1337,
      inbound: [
        { appPort: 80, listener: 15006 },
        { appPort: 9113, listener: 15007 },
      ],
      outbound: [],
      openPorts: [15020],
      probeSources: [],
    }),
  );
  assert.match(podInitRuleset([8080]), /tcp dport 8080 redirect to :15006/);
  assert.doesNotMatch(podInitRuleset([8080]), /dport 53/);
  assert.equal(podInitRuleset([8080], { dns: true }), podRuleset({ ...podRulesetInput([8080]), dnsRedirect: 15053 }));
  assert.throws(() => podInitRuleset([15020]), RangeError, 'an app port that is the admin port is refused');
});

test('without DNS interception the pod keeps only HTTP_PROXY as its way out', () => {
  const r = injectPod(deploymentPod(), { dns: false });
  assert.ok(r.injected);
  const proxy = named(r.pod, SIDECAR_NAME);
  assert.ok(!((proxy?.args ?? []) as string[]).includes('--dns-listen'));
  assert.deepEqual(named(r.pod, INIT_NAME)?.args, ['pod-init', '--ports', '8080']);
  assert.ok(!proxy?.ports?.some((p) => p.containerPort === 15053));
  assert.equal(at(r.pod, 'spec.securityContext'), undefined);
});

test("a pod's own securityContext and sysctls are kept, its own ip_unprivileged_port_start too", () => {
  const own = deploymentPod();
  (own.spec as Record<string, unknown>).securityContext = {
    fsGroup: 2000,
    sysctls: [
      { name: 'net.ipv4.ip_unprivileged_port_start', value: '1000' },
      { name: 'kernel.shm_rmid_forced', value: '1' },
    ],
  };
  const pod = injected(own);
  new Pod(pod as never).validate();
  assert.deepEqual(at(pod, 'spec.securityContext'), (own.spec as Record<string, unknown>).securityContext);
  const other = deploymentPod();
  (other.spec as Record<string, unknown>).securityContext = { runAsNonRoot: true, sysctls: [{ name: 'kernel.shm_rmid_forced', value: '1' }] };
  assert.deepEqual(at(injected(other), 'spec.securityContext'), {
    runAsNonRoot: true,
    sysctls: [
      { name: 'kernel.shm_rmid_forced', value: '1' },
      { name: 'net.ipv4.ip_unprivileged_port_start', value: '0' },
    ],
  });
});

function podRulesetInput(ports: number[]) {
  return {
    table: 'trellis',
    sidecarUid: 1337,
    inbound: ports.map((appPort, i) => ({ appPort, listener: 15006 + i })),
    outbound: [],
    openPorts: [15020],
    probeSources: [],
  };
}

test('trellis inject works on every workload kind and keeps other documents', () => {
  const deployment = injectManifest(DEPLOYMENT);
  assert.ok(deployment.result?.injected);
  new Deployment(deployment.doc as never).validate();
  const tpl = at(deployment.doc, 'spec.template');
  assert.equal(at(tpl, 'metadata.namespace'), undefined, 'a template gets no namespace of its own');
  assert.equal(at(tpl, 'spec.initContainers.1.name'), SIDECAR_NAME);
  assert.equal((DEPLOYMENT.spec.template.spec as Record<string, unknown>).initContainers, undefined, 'the input is not changed');

  const sts = injectManifest(STATEFUL_SET);
  new StatefulSet(sts.doc as never).validate();
  assert.equal(at(sts.doc, 'spec.volumeClaimTemplates.0.metadata.name'), 'data');

  const jobSpec = { template: { spec: { restartPolicy: 'Never', containers: [{ name: 'migrate', image: 'migrate:1' }] } } };
  const job = injectManifest({ apiVersion: 'batch/v1', kind: 'Job', metadata: { name: 'm' }, spec: jobSpec });
  new Job(job.doc as never).validate();
  const cron = injectManifest({
    apiVersion: 'batch/v1',
    kind: 'CronJob',
    metadata: { name: 'b' },
    spec: { schedule: '0 3 * * *', jobTemplate: { spec: jobSpec } },
  });
  new CronJob(cron.doc as never).validate();
  assert.equal(at(cron.doc, 'spec.jobTemplate.spec.template.spec.initContainers.1.name'), SIDECAR_NAME);

  const service = { apiVersion: 'v1', kind: 'Service', metadata: { name: 's' }, spec: { ports: [{ port: 80 }] } };
  assert.deepEqual(injectManifest(service), { doc: service, result: undefined });
  assert.deepEqual(injectManifest('text'), { doc: 'text', result: undefined });
});

test('odd pod shapes never throw', () => {
  for (const pod of [{}, { spec: {} }, { spec: { containers: [] } }, { metadata: { labels: {} }, spec: { containers: [{ name: 'a' }] } }]) {
    injectPod(pod as K8sPod);
  }
});
