// Every error code in the table is documented, with its token and status (as fastify checks its errors).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { ERRORS, TrellisError } from '../src/errors.js';

test('docs/errors.md lists every code with its token and status', async () => {
  const doc = await readFile(fileURLToPath(new URL('../../docs/errors.md', import.meta.url)), 'utf8');
  for (const [code, spec] of Object.entries(ERRORS)) {
    assert.match(doc, new RegExp(`\\| \`${code}\` \\| \`${spec.token}\` \\| ${spec.status} \\|`), `${code} is documented`);
  }
});

test('tokens are unique, so a header names exactly one cause', () => {
  const tokens = Object.values(ERRORS).map((e) => e.token);
  assert.equal(new Set(tokens).size, tokens.length);
});

test('a TrellisError fills its message from the params', () => {
  const e = new TrellisError('TRELLIS_E_NO_ENDPOINTS', { backend: 'backend-v2' });
  assert.equal(e.message, 'backend "backend-v2" has no healthy endpoint');
  assert.equal(e.status, 503);
  assert.equal(e.token, 'no-endpoints');
});
