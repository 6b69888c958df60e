// The `ExternalService` kind (trellis.dev/v1alpha1): a host outside the mesh that its
// services may call, in the shape of Istio's ServiceEntry (hosts, ports with a protocol,
// resolution STATIC or DNS, endpoints), narrowed to what Trellis does with it, plus the
// TLS origination Istio puts in a DestinationRule (`tls: { caFile, sni }`), so one
// resource says everything about one external host (docs/contracts.md says why).
import { Type, type Static } from '@sinclair/typebox';
import { DnsLabel, DnsSubdomain, Port, strict, TRELLIS_API_VERSION } from './common.js';

export const EXTERNAL_PROTOCOLS = ['HTTP', 'HTTPS', 'TLS', 'TCP'] as const;

const ExternalPort = Type.Object(
  {
    number: { ...Port, description: 'the port callers address (Host: api.example.test:<number>; 80 when the Host names none)' },
    name: Type.Optional(DnsLabel),
    protocol: Type.Union(
      EXTERNAL_PROTOCOLS.map((p) => Type.Literal(p)),
      { description: 'HTTP (routed, retried, optionally TLS-originated), HTTPS or TLS (opaque bytes: the app speaks TLS itself), or TCP' },
    ),
    targetPort: Type.Optional({ ...Port, description: 'the port the external endpoints listen at (default: number)' }),
  },
  strict,
);

const ExternalEndpoint = Type.Object(
  {
    address: Type.String({ minLength: 1, maxLength: 45, description: 'an IPv4 or IPv6 address (STATIC resolution)' }),
    port: Type.Optional({ ...Port, description: "this endpoint's port (default: the port's targetPort, else its number)" }),
  },
  strict,
);

/** Schema of the `ExternalService` kind. */
export const ExternalServiceSchema = Type.Object(
  {
    apiVersion: Type.Literal(TRELLIS_API_VERSION),
    kind: Type.Literal('ExternalService'),
    metadata: Type.Object(
      {
        name: DnsLabel,
        namespace: Type.Optional(DnsLabel),
        labels: Type.Optional(Type.Record(Type.String(), Type.String())),
        annotations: Type.Optional(Type.Record(Type.String(), Type.String())),
      },
      strict,
    ),
    spec: Type.Object(
      {
        hosts: Type.Array({ ...DnsSubdomain, description: 'a host name callers use (no wildcards)' }, { minItems: 1, maxItems: 16 }),
        ports: Type.Array(ExternalPort, {
          minItems: 1,
          maxItems: 1,
          description: 'the one port of this external service (declare another ExternalService for another host)',
        }),
        resolution: Type.Union([Type.Literal('STATIC'), Type.Literal('DNS')], {
          description: 'STATIC: the endpoints addresses; DNS: the first host, resolved when a connection opens',
        }),
        endpoints: Type.Optional(Type.Array(ExternalEndpoint, { minItems: 1, maxItems: 64 })),
        tls: Type.Optional(
          Type.Object(
            {
              caFile: Type.String({ minLength: 1, description: 'PEM CA bundle the server certificate must chain to (relative to this file)' }),
              sni: Type.Optional({ ...DnsSubdomain, description: 'the SNI and the name the certificate must carry (default: the first host)' }),
            },
            { ...strict, description: 'TLS origination (HTTP and TCP ports): callers speak plaintext; the proxy that leaves the mesh opens TLS' },
          ),
        ),
      },
      strict,
    ),
  },
  { ...strict, title: 'ExternalService', description: 'A host outside the mesh its services may call (Istio ServiceEntry).' },
);

/** An `ExternalService` as written. */
export type ExternalServiceResource = Static<typeof ExternalServiceSchema>;
