// The meshes the conformance cases run on: the upstream manifests' services
// (conformance/mesh/manifests.yaml: Deployments echo-v1 and echo-v2 of app `echo`,
// Services echo, echo-v1 and echo-v2) translated to Trellis mesh files. Each mesh holds
// the services its cases address, and each is started once for all of its cases.
//
// How the Kubernetes objects map to Trellis:
// - Service `echo` selects both Deployments: a Trellis service `echo` with versions v1 and
//   v2, whose instances echo-v1-0 and echo-v2-0 are the pods echo-v1-… and echo-v2-…
//   (the upstream checks name the backend by the pod name's prefix). A backendRef
//   `echo-v1` is then version v1 of `echo`: the same pods the upstream Service selects.
// - The cases that address Services `echo-v1` and `echo-v2` as hosts run on meshes where
//   they are plain services (`frontends`, `ports`, `consumer`).
// - The client is the pod `app=echo,version=v1` calling out through its own sidecar, as
//   the upstream suite execs its echo client inside that pod.
import { join } from 'node:path';
import { REPO } from '../helpers/mesh-run.js';

/** Upstream's `gateway-conformance-mesh`, where the echo services and the case routes live. */
export const MESH_NS = 'gateway-conformance-mesh';
/** Upstream's second namespace, where MeshConsumerRoute's consumer runs. */
export const CONSUMER_NS = 'gateway-conformance-mesh-consumer';
/** The producer namespace of MeshConsumerRoute: always the upstream's name (that case needs namespaces anyway). */
export const PRODUCER_NS = 'gateway-conformance-mesh';

export const ECHO_APP = join(REPO, 'test', 'fixtures', 'apps', 'conformance-echo.js');

export type MeshId = 'echo' | 'frontends' | 'ports' | 'consumer';

/** A client pod: the instance of this service (and version) whose sidecar sends the requests. */
export interface ClientRef {
  readonly service: string;
  readonly namespace: string;
  readonly version?: string;
}

export interface MeshDef {
  readonly id: MeshId;
  /** The mesh file's `services:` entries (YAML, indented for `spec.services`). */
  readonly services: string;
  /** Clients by name; `default` sends unless a check names another. */
  readonly clients: Readonly<Record<string, ClientRef>>;
}

const HEALTH = 'health: { tcp: {}, interval: 200ms, timeout: 1s }';
const nsLine = (ns: string): string => (ns === 'default' ? '' : `\n      namespace: ${ns}`);

export const MESHES: readonly MeshDef[] = [
  {
    // Service echo over both Deployments; the client is echo's v1 pod calling its own Service.
    id: 'echo',
    services: `    - name: echo${nsLine(MESH_NS)}
      protocol: http
      command: node ${ECHO_APP}
      upstreams: [echo]
      ${HEALTH}
      versions:
        - name: v1
        - name: v2
`,
    clients: { default: { service: 'echo', namespace: MESH_NS, version: 'v1' } },
  },
  {
    // Services echo-v1 and echo-v2, one pod each (MeshFrontend, MeshFrontendHostname).
    id: 'frontends',
    services: `    - name: echo-v1${nsLine(MESH_NS)}
      protocol: http
      command: node ${ECHO_APP}
      upstreams: [echo-v1, echo-v2]
      ${HEALTH}
    - name: echo-v2${nsLine(MESH_NS)}
      protocol: http
      command: node ${ECHO_APP}
      upstreams: [echo-v1, echo-v2]
      ${HEALTH}
`,
    clients: { default: { service: 'echo-v1', namespace: MESH_NS } },
  },
  {
    // As `frontends`, with upstream's two HTTP ports (http 80, http-alt 8080) per Service
    // (MeshPorts): wt/ports's `ports:` list.
    id: 'ports',
    services: `    - name: echo-v1${nsLine(MESH_NS)}
      command: node ${ECHO_APP}
      ports:
        - { name: http, port: 80, protocol: http }
        - { name: http-alt, port: 8080, protocol: http }
      upstreams: [echo-v1, echo-v2]
      ${HEALTH}
    - name: echo-v2${nsLine(MESH_NS)}
      command: node ${ECHO_APP}
      ports:
        - { name: http, port: 80, protocol: http }
        - { name: http-alt, port: 8080, protocol: http }
      upstreams: [echo-v1, echo-v2]
      ${HEALTH}
`,
    clients: { default: { service: 'echo-v1', namespace: MESH_NS } },
  },
  {
    // Deployment echo-v1 in both namespaces; Service echo-v1 in the producer's (MeshConsumerRoute).
    id: 'consumer',
    services: `    - name: echo-v1
      namespace: ${PRODUCER_NS}
      protocol: http
      command: node ${ECHO_APP}
      upstreams: [echo-v1]
      ${HEALTH}
    - name: echo-v1
      namespace: ${CONSUMER_NS}
      protocol: http
      command: node ${ECHO_APP}
      upstreams: [{ service: echo-v1, namespace: ${PRODUCER_NS} }]
      ${HEALTH}
`,
    clients: {
      default: { service: 'echo-v1', namespace: PRODUCER_NS },
      consumer: { service: 'echo-v1', namespace: CONSUMER_NS },
    },
  },
];

/** The mesh file of `mesh`, its routes in the folder `routes` beside it. */
export function meshFile(mesh: MeshDef): string {
  return `apiVersion: trellis.dev/v1alpha1
kind: Mesh
metadata:
  name: conformance-${mesh.id}
spec:
  include: [routes]
  services:
${mesh.services}`;
}
