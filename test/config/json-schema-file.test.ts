// The committed JSON Schema must be what the TypeBox source generates today; when
// this fails, run `npm run schema` and commit schema/trellis.schema.json.
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { buildJsonSchema, JSON_SCHEMA_PATH, jsonSchemaText } from '../../src/config/json-schema.js';
import { ROOT } from './helpers.js';

describe('schema/trellis.schema.json', () => {
  it('is up to date with src/config/schema.ts (run `npm run schema` if not)', async () => {
    const committed = await readFile(join(ROOT, JSON_SCHEMA_PATH), 'utf8');
    assert.equal(committed, jsonSchemaText());
  });

  it('holds each kind under $defs and accepts any of them through oneOf', () => {
    const schema = buildJsonSchema() as { oneOf: unknown; $defs: Record<string, { properties: { kind: { const: string } } }> };
    assert.deepEqual(schema.oneOf, [
      { $ref: '#/$defs/Mesh' },
      { $ref: '#/$defs/HTTPRoute' },
      { $ref: '#/$defs/BackendPolicy' },
      { $ref: '#/$defs/RateLimitPolicy' },
      { $ref: '#/$defs/RequestAuthentication' },
      { $ref: '#/$defs/AuthorizationPolicy' },
      { $ref: '#/$defs/Gateway' },
      { $ref: '#/$defs/Secret' },
      { $ref: '#/$defs/TLSRoute' },
    ]);
    assert.equal(schema.$defs.Gateway!.properties.kind.const, 'Gateway');
    assert.equal(schema.$defs.TLSRoute!.properties.kind.const, 'TLSRoute');
    assert.equal(schema.$defs.RateLimitPolicy!.properties.kind.const, 'RateLimitPolicy');
    assert.equal(schema.$defs.RequestAuthentication!.properties.kind.const, 'RequestAuthentication');
    assert.equal(schema.$defs.BackendPolicy!.properties.kind.const, 'BackendPolicy');
    assert.equal(schema.$defs.AuthorizationPolicy!.properties.kind.const, 'AuthorizationPolicy');
    assert.equal(schema.$defs.Mesh!.properties.kind.const, 'Mesh');
    assert.equal(schema.$defs.HTTPRoute!.properties.kind.const, 'HTTPRoute');
  });
});
