// Real pod specs for the injection tests: a Deployment's pod template, a StatefulSet, a
// pod with its own init containers, one opted out. Shaped as `kubectl get -o yaml` shows
// them (named ports, HTTP probes, a volume of its own).
import type { K8sPod } from '../../src/k8s/inject.js';

export const DEPLOYMENT = {
  apiVersion: 'apps/v1',
  kind: 'Deployment',
  metadata: { name: 'backend', namespace: 'shop', labels: { app: 'backend' } },
  spec: {
    replicas: 2,
    selector: { matchLabels: { app: 'backend', version: 'v1' } },
    template: {
      metadata: { labels: { app: 'backend', version: 'v1' } },
      spec: {
        serviceAccountName: 'backend',
        containers: [
          {
            name: 'backend',
            image: 'ghcr.io/trellis-mesh/shop-backend:0.1.0',
            ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }],
            env: [{ name: 'DATABASE_URL', value: 'postgres://postgres.shop:5432/shop' }],
            readinessProbe: { httpGet: { path: '/healthz', port: 'http' }, periodSeconds: 5 },
            livenessProbe: { httpGet: { path: '/livez', port: 8080, scheme: 'HTTP' }, initialDelaySeconds: 3 },
            resources: { requests: { cpu: '50m', memory: '64Mi' } },
          },
        ],
        volumes: [{ name: 'cache', emptyDir: {} }],
      },
    },
  },
};

export const STATEFUL_SET = {
  apiVersion: 'apps/v1',
  kind: 'StatefulSet',
  metadata: { name: 'postgres', namespace: 'shop' },
  spec: {
    serviceName: 'postgres',
    replicas: 1,
    selector: { matchLabels: { 'app.kubernetes.io/name': 'postgres' } },
    template: {
      metadata: { labels: { 'app.kubernetes.io/name': 'postgres', 'app.kubernetes.io/version': '16' } },
      spec: {
        containers: [
          {
            name: 'postgres',
            image: 'postgres:16',
            ports: [{ containerPort: 5432, name: 'pg' }],
            readinessProbe: { exec: { command: ['pg_isready'] } },
            volumeMounts: [{ name: 'data', mountPath: '/var/lib/postgresql/data' }],
          },
        ],
      },
    },
    volumeClaimTemplates: [{ metadata: { name: 'data' }, spec: { accessModes: ['ReadWriteOnce'], resources: { requests: { storage: '1Gi' } } } }],
  },
};

/** A pod the ReplicaSet controller would create: generateName, no namespace yet, its own init container. */
export function podWithInit(): K8sPod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { generateName: 'frontend-7d9f-', labels: { app: 'frontend' } },
    spec: {
      initContainers: [{ name: 'wait-for-backend', image: 'curlimages/curl:8.8.0', args: ['--retry', '10', 'http://backend.shop:8080/healthz'] }],
      containers: [
        { name: 'frontend', image: 'nginx:1.27', ports: [{ containerPort: 80 }], startupProbe: { httpGet: { path: '/', port: 80 }, failureThreshold: 30 } },
        { name: 'metrics', image: 'nginx/nginx-prometheus-exporter:1.3', ports: [{ containerPort: 9113, name: 'metrics' }] },
      ],
    },
  };
}

export function optedOut(): K8sPod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name: 'debug', namespace: 'shop', labels: { app: 'debug', 'trellis.dev/inject': 'disabled' } },
    spec: { containers: [{ name: 'debug', image: 'busybox:1.36', args: ['sleep', '3600'] }] },
  };
}

/** The Deployment's pod as its ReplicaSet creates it. */
export function deploymentPod(): K8sPod {
  const t = structuredClone(DEPLOYMENT.spec.template) as K8sPod;
  return { apiVersion: 'v1', kind: 'Pod', ...t, metadata: { ...t.metadata, generateName: 'backend-5c8d-' } };
}

export function statefulSetPod(): K8sPod {
  const t = structuredClone(STATEFUL_SET.spec.template) as K8sPod;
  return { apiVersion: 'v1', kind: 'Pod', ...t, metadata: { ...t.metadata, name: 'postgres-0' } };
}

/** An AdmissionReview v1 request for creating `pod` in `namespace`, as the apiserver sends it. */
export function admissionReview(pod: K8sPod, namespace = 'shop', uid = '705ab4f5-6393-11e8-b7cc-42010a800002'): Record<string, unknown> {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid,
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      requestKind: { group: '', version: 'v1', kind: 'Pod' },
      requestResource: { group: '', version: 'v1', resource: 'pods' },
      name: pod.metadata?.name,
      namespace,
      operation: 'CREATE',
      userInfo: { username: 'system:serviceaccount:kube-system:replicaset-controller', groups: ['system:serviceaccounts'] },
      object: pod,
      oldObject: null,
      dryRun: false,
      options: { apiVersion: 'meta.k8s.io/v1', kind: 'CreateOptions' },
    },
  };
}
