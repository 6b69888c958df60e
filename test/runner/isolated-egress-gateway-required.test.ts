// `trellis up --isolate` needs the mesh's egress gateway when ExternalServices are declared
// (a pod has no route out, and the host's loopback is not the pod's): assertIsolatedEgress
// refuses without one, naming the ExternalServices (at most five) and what to add. The e2e
// (test/e2e/isolated-external-needs-egress-gateway.test.ts) runs it where root is at hand.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assertIsolatedEgress } from '../../src/runner/local-mesh.js';
import type { ExternalServiceConfig } from '../../src/config/check-external-services.js';

const external = (name: string, namespace = 'default'): ExternalServiceConfig => ({
  name,
  namespace,
  hosts: [`${name}.example.test`],
  port: 80,
  protocol: 'HTTP',
  resolution: 'STATIC',
  endpoints: [{ host: '127.0.0.1', port: 8443 }],
});

test('no ExternalService, or an egress gateway: nothing to refuse', () => {
  assertIsolatedEgress({ externalServices: [] });
  assertIsolatedEgress({ externalServices: [external('api')], egressGateway: { name: 'egress' } });
});

test('ExternalServices without an egress gateway: refused, naming them and the Mesh field to add', () => {
  assert.throws(
    () => assertIsolatedEgress({ externalServices: [external('api'), external('ledger', 'payments')] }),
    (err: Error & { code?: string }) =>
      err.code === 'TRELLIS_E_USAGE' &&
      /the mesh names none for api, ledger\.payments: add `outboundTrafficPolicy: \{ egressGateway: \{ name: egress \} \}` to the Mesh's spec/.test(
        err.message,
      ),
  );
  assert.throws(
    () => assertIsolatedEgress({ externalServices: ['a', 'b', 'c', 'd', 'e', 'f', 'g'].map((n) => external(n)) }),
    /none for a, b, c, d, e and 2 more:/,
  );
});
