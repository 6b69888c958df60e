// What every kind's schema shares: the apiVersions, the scalars (names, durations,
// ports, paths), Kubernetes metadata, and the Gateway API's reference pieces (group,
// kind, object and section names) that routes and policies both use.
import { Type, type Static, type StringOptions } from '@sinclair/typebox';

/** apiVersion of the Trellis policy kinds. */
export const TRELLIS_API_VERSION = 'trellis.dev/v1alpha1';
/** apiVersion of the Gateway API kinds Trellis reads. */
export const GATEWAY_API_VERSION = 'gateway.networking.k8s.io/v1';

/** apiVersion of the Gateway API kinds still in beta (ReferenceGrant). */
export const GATEWAY_API_BETA_VERSION = 'gateway.networking.k8s.io/v1beta1';

/** apiVersion of the experimental Gateway API kinds (TCPRoute). */
export const GATEWAY_API_ALPHA_VERSION = 'gateway.networking.k8s.io/v1alpha2';

/** apiVersion of the experimental Gateway API kinds Trellis reads (XBackendTrafficPolicy). */
export const GATEWAY_X_API_VERSION = 'gateway.networking.x-k8s.io/v1alpha1';

/** Closed objects: an unknown field is an error with its path, not silently ignored. */
export const strict = { additionalProperties: false } as const;

// ---------------------------------------------------------------------------
// Shared scalars
// ---------------------------------------------------------------------------

const DNS_LABEL = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$';
export const DNS_SUBDOMAIN = '^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$';

/** A DNS label (RFC 1123): the shape of service, version and mesh names. */
export const DnsLabel = Type.String({
  pattern: DNS_LABEL,
  maxLength: 63,
  description: "a DNS label: lower-case letters, digits and '-', starting and ending with a letter or digit, at most 63 characters",
});

export const DnsSubdomain = Type.String({
  pattern: DNS_SUBDOMAIN,
  maxLength: 253,
  description: "a DNS name: dot-separated DNS labels of lower-case letters, digits and '-'",
});

/** `<n>ms|s|m|h`; converted to milliseconds by `parseDurationMs`. */
export const duration = (options: StringOptions = {}) =>
  Type.String({ pattern: '^\\d+(\\.\\d+)?(ms|s|m|h)$', description: 'a duration such as 500ms, 2s, 1m or 1.5h', ...options });

export const Port = Type.Integer({ minimum: 1, maximum: 65535, description: 'a TCP port number (1-65535)' });

export const StringMap = Type.Record(Type.String(), Type.String(), {
  description: 'a mapping of names to strings',
});

export const httpPath = (options: StringOptions = {}) => Type.String({ pattern: '^/', maxLength: 1024, description: 'a path starting with /', ...options });

// Gateway API Duration (GEP-2257): up to four <number><unit> parts, e.g. 1m30s, 250ms.
export const gatewayDuration = (description: string) =>
  Type.String({ pattern: '^([0-9]{1,5}(h|m|s|ms)){1,4}$', description: `a Gateway API duration such as 250ms, 10s or 1m30s (${description})` });

// ---------------------------------------------------------------------------
// Metadata (Kubernetes style; the few fields a config file may carry)
// ---------------------------------------------------------------------------

export const Metadata = Type.Object(
  {
    name: DnsSubdomain,
    namespace: Type.Optional(DnsLabel),
    labels: Type.Optional(StringMap),
    annotations: Type.Optional(StringMap),
  },
  strict,
);

/** Kubernetes-style metadata: name, namespace, labels, annotations. */
export type Metadata = Static<typeof Metadata>;

// ---------------------------------------------------------------------------
// Gateway API references
// ---------------------------------------------------------------------------

// `^$|...`: the core group is spelled "" and must stay valid.
export const group = () =>
  Type.String({
    pattern: '^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$',
    maxLength: 253,
    description: 'an API group: "" (core) or a DNS name',
    default: '',
  });

export const kind = () =>
  Type.String({
    pattern: '^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$',
    maxLength: 63,
    description: 'a kind such as Service',
    default: 'Service',
  });

export const ObjectName = Type.String({ minLength: 1, maxLength: 253 });

export const SectionName = Type.String({
  pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$',
  maxLength: 253,
  description: "a section name: lower-case letters, digits and '-'",
});
