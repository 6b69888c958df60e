// The Gateway API `Gateway` kind (gateway.networking.k8s.io/v1), the listeners a gateway
// proxy opens at the edge, and the core `Secret` (v1, type kubernetes.io/tls) its HTTPS
// listeners' certificateRefs name. A Secret carries its certificate as Kubernetes does
// (`data`, base64 `tls.crt` and `tls.key`) or, locally, as files named by the
// annotations `trellis.dev/certificate-file` and `trellis.dev/key-file` (paths relative
// to the file that declares the Secret): files are watched, so replacing one on disk
// reloads the certificate.
import { Type, type Static } from '@sinclair/typebox';
import { DnsLabel, GATEWAY_API_VERSION, group, Metadata, ObjectName, Port, SectionName, StringMap, strict } from './common.js';

/** A listener hostname: a DNS name, or `*.` and one (Gateway API Hostname; no IPs). */
export const ListenerHostname = Type.String({
  pattern: '^(\\*\\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$',
  maxLength: 253,
  description: 'a host name such as shop.example.com, or a wildcard such as *.example.com',
});

const CertificateRef = Type.Object(
  {
    group: Type.Optional(Type.Literal('', { description: 'the core group, for a Secret' })),
    kind: Type.Optional(Type.Literal('Secret', { description: 'a Secret (v1) of type kubernetes.io/tls in the config files' })),
    name: ObjectName,
    namespace: Type.Optional(DnsLabel),
  },
  strict,
);

const Listener = Type.Object(
  {
    name: SectionName,
    port: Port,
    protocol: Type.Union([Type.Literal('HTTP'), Type.Literal('HTTPS'), Type.Literal('TLS')], {
      description: 'HTTP, HTTPS (TLS terminated at the gateway), or TLS (tls.mode Passthrough: routed by SNI with TLSRoutes, not terminated)',
    }),
    hostname: Type.Optional(ListenerHostname),
    tls: Type.Optional(
      Type.Object(
        {
          mode: Type.Optional(
            Type.Union([Type.Literal('Terminate'), Type.Literal('Passthrough')], {
              description: 'Terminate (HTTPS, the default), or Passthrough (a TLS listener)',
            }),
          ),
          certificateRefs: Type.Optional(Type.Array(CertificateRef, { minItems: 1, maxItems: 16 })),
          options: Type.Optional(StringMap),
        },
        strict,
      ),
    ),
    allowedRoutes: Type.Optional(
      Type.Object(
        {
          namespaces: Type.Optional(Type.Object({ from: Type.Optional(Type.Union([Type.Literal('Same'), Type.Literal('All')], { default: 'Same' })) }, strict)),
          kinds: Type.Optional(
            Type.Array(
              Type.Object(
                { group: Type.Optional(group()), kind: Type.Union([Type.Literal('HTTPRoute'), Type.Literal('GRPCRoute'), Type.Literal('TLSRoute')]) },
                strict,
              ),
              {
                maxItems: 8,
              },
            ),
          ),
        },
        strict,
      ),
    ),
  },
  strict,
);

/** Schema of the Gateway API `Gateway` kind (v1): HTTP and HTTPS listeners. */
export const GatewaySchema = Type.Object(
  {
    apiVersion: Type.Literal(GATEWAY_API_VERSION),
    kind: Type.Literal('Gateway'),
    metadata: Metadata,
    spec: Type.Object(
      {
        gatewayClassName: Type.Optional(ObjectName),
        listeners: Type.Array(Listener, { minItems: 1, maxItems: 64 }),
      },
      strict,
    ),
  },
  { additionalProperties: false, description: 'A Gateway API Gateway: the listeners of an edge proxy' },
);

/** Schema of a core `Secret` of type kubernetes.io/tls: a certificate and key for a Gateway's HTTPS listener. */
export const SecretSchema = Type.Object(
  {
    apiVersion: Type.Literal('v1'),
    kind: Type.Literal('Secret'),
    metadata: Metadata,
    type: Type.Optional(Type.Literal('kubernetes.io/tls')),
    data: Type.Optional(
      Type.Object(
        { 'tls.crt': Type.String({ maxLength: 1_000_000 }), 'tls.key': Type.String({ maxLength: 100_000 }) },
        { ...strict, description: 'base64 PEM, as Kubernetes keeps them' },
      ),
    ),
  },
  {
    additionalProperties: false,
    description: 'A TLS Secret: data (base64), or files named by the trellis.dev/certificate-file and trellis.dev/key-file annotations',
  },
);

export type GatewayResource = Static<typeof GatewaySchema>;
export type SecretResource = Static<typeof SecretSchema>;
export type ListenerSpec = Static<typeof Listener>;
