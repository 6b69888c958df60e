// The JSON Schema of every Trellis resource, built from the TypeBox source (schema.ts,
// the index of schema/). Editors (yaml-language-server) and other tools validate with
// it; it is committed as schema/trellis.schema.json and a test fails when it is stale.
import {
  AuthorizationPolicySchema,
  BackendPolicySchema,
  GatewaySchema,
  HTTPRouteSchema,
  MeshSchema,
  RateLimitPolicySchema,
  RequestAuthenticationSchema,
  SecretSchema,
  TLSRouteSchema,
} from './schema.js';

/** Path of the committed JSON Schema, relative to the project root. */
export const JSON_SCHEMA_PATH = 'schema/trellis.schema.json';

/** The JSON Schema document: each kind under `$defs`, a resource is `oneOf` them. */
export function buildJsonSchema(): Record<string, unknown> {
  // JSON.stringify (below) drops TypeBox's symbol-keyed bookkeeping, leaving plain
  // JSON Schema.
  return {
    $schema: 'https://json-schema.org/draft/2020-12/schema',
    $id: 'https://trellis.dev/schema/trellis.schema.json',
    title: 'Trellis configuration resource',
    description: 'Generated from src/config/schema.ts by `npm run schema`; do not edit by hand.',
    oneOf: [
      { $ref: '#/$defs/Mesh' },
      { $ref: '#/$defs/HTTPRoute' },
      { $ref: '#/$defs/BackendPolicy' },
      { $ref: '#/$defs/RateLimitPolicy' },
      { $ref: '#/$defs/RequestAuthentication' },
      { $ref: '#/$defs/AuthorizationPolicy' },
      { $ref: '#/$defs/Gateway' },
      { $ref: '#/$defs/Secret' },
      { $ref: '#/$defs/TLSRoute' },
    ],
    $defs: {
      Mesh: MeshSchema,
      HTTPRoute: HTTPRouteSchema,
      BackendPolicy: BackendPolicySchema,
      RateLimitPolicy: RateLimitPolicySchema,
      RequestAuthentication: RequestAuthenticationSchema,
      AuthorizationPolicy: AuthorizationPolicySchema,
      Gateway: GatewaySchema,
      Secret: SecretSchema,
      TLSRoute: TLSRouteSchema,
    },
  };
}

/** The exact text of schema/trellis.schema.json. */
export function jsonSchemaText(): string {
  return `${JSON.stringify(buildJsonSchema(), null, 2)}\n`;
}
