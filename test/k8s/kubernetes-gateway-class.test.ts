// GatewayClasses from the Kubernetes API (`trellis control --kubernetes`), against the API
// stand-in: a Gateway is Trellis's when its GatewayClass names the controller
// trellis.dev/gateway-controller, whatever the class is called; class `trellis` stays
// Trellis's while no GatewayClass of that name exists (installs from before), and stops
// being so once one names another controller. The Lease leader writes Trellis's
// GatewayClass Accepted True (cluster-scoped status path) and leaves another
// controller's alone. Failed before: GatewayClasses were not read (a Gateway of class
// mesh-edge was ignored, class trellis always taken, no GatewayClass status).
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { KubeApiStandIn, type StandInObject } from '../helpers/kube-api-stand-in.js';
import { eventually } from '../helpers/eventually.js';
import type { ControlPlane } from '../../src/control/control-plane.js';
import { startKubernetesControlPlane, stopKubernetesTest } from '../helpers/kubernetes-control-plane.js';
import { CONTROLLER_NAME } from '../../src/k8s/source/route-status.js';

const GW = 'gateway.networking.k8s.io/v1';

const gatewayClass = (name: string, controllerName: string): StandInObject => ({
  apiVersion: GW,
  kind: 'GatewayClass',
  metadata: { name },
  spec: { controllerName },
});

const gateway = (name: string, className: string, port: number): StandInObject => ({
  apiVersion: GW,
  kind: 'Gateway',
  metadata: { name, namespace: 'shop' },
  spec: { gatewayClassName: className, listeners: [{ name: 'http', port, protocol: 'HTTP' }] },
});

interface Cond {
  type: string;
  status: string;
  reason: string;
  observedGeneration: number;
}

describe('GatewayClasses from the kubernetes API', () => {
  let api: KubeApiStandIn;
  let plane: ControlPlane;
  const logs: string[] = [];

  before(async () => {
    api = await new KubeApiStandIn().start();
    api.apply(gatewayClass('mesh-edge', CONTROLLER_NAME));
    api.apply(gatewayClass('istio', 'istio.io/gateway-controller'));
    api.apply(gateway('edge', 'mesh-edge', 8080));
    api.apply(gateway('legacy', 'trellis', 8081));
    api.apply(gateway('theirs', 'istio', 8082));
    plane = await startKubernetesControlPlane(api, {
      log: (line) => void logs.push(line),
      token: 'leader-token',
      kubernetes: { replica: 'control-a', statusResyncMs: 100 },
    });
  });

  after(() => stopKubernetesTest([], [plane], api));

  const names = (): string[] => (plane.model.config.gateways ?? []).map((g) => g.name).sort();
  const classStatus = async (name: string): Promise<{ conditions?: Cond[] } | undefined> => {
    const res = await fetch(`${api.url}/apis/gateway.networking.k8s.io/v1/gatewayclasses/${name}`);
    assert.equal(res.status, 200);
    return ((await res.json()) as { status?: { conditions?: Cond[] } }).status;
  };

  it('serves the Gateways whose class names the Trellis controller, and class trellis while no GatewayClass of that name exists', async () => {
    await eventually(() => names().join() === 'edge,legacy', { what: 'the Gateways of classes mesh-edge and trellis in force' });
    api.apply(gatewayClass('trellis', 'example.com/other-controller'));
    await eventually(() => names().join() === 'edge', { what: 'the class-trellis Gateway dropped once its class names another controller' });
  });

  it('writes Accepted True on its GatewayClass, and nothing on another controller’s', async () => {
    await eventually(async () => (await classStatus('mesh-edge'))?.conditions?.some((c) => c.type === 'Accepted') === true, {
      what: 'the mesh-edge GatewayClass Accepted',
    });
    const accepted = (await classStatus('mesh-edge'))!.conditions!.find((c) => c.type === 'Accepted')!;
    assert.deepEqual([accepted.status, accepted.reason, accepted.observedGeneration], ['True', 'Accepted', 1]);
    assert.equal((await classStatus('istio'))?.conditions, undefined);
    assert.equal((await classStatus('trellis'))?.conditions, undefined);
    assert.ok(!api.statusWrites.some((w) => w.key === 'istio' && w.method === 'PUT'), 'no write to another controller’s class');
  });
});
