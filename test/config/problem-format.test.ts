// How problems and durations are rendered and parsed.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatProblem, parseDurationMs } from '../../src/config/load.js';
import { fieldPath } from '../../src/config/problems.js';
import { TrellisError } from '../../src/errors.js';

describe('formatProblem', () => {
  it('writes file:line:col: path: message', () => {
    assert.equal(
      formatProblem({ file: 'm.yaml', line: 3, column: 7, path: 'spec.services[0].port', message: 'must be a port' }),
      'm.yaml:3:7: spec.services[0].port: must be a port',
    );
  });
  it('leaves out missing parts', () => {
    assert.equal(formatProblem({ file: 'm.yaml', path: '', message: 'cannot be read' }), 'm.yaml: cannot be read');
    assert.equal(formatProblem({ file: 'm.yaml', line: 2, path: 'kind', message: 'x' }), 'm.yaml:2: kind: x');
  });
});

describe('fieldPath', () => {
  it('uses dots for keys, brackets for indices and odd keys', () => {
    assert.equal(fieldPath(['spec', 'rules', 0, 'backendRefs', 1, 'name']), 'spec.rules[0].backendRefs[1].name');
    assert.equal(fieldPath(['metadata', 'labels', 'app.kubernetes.io/name']), 'metadata.labels["app.kubernetes.io/name"]');
    assert.equal(fieldPath([]), '');
  });
});

describe('parseDurationMs', () => {
  it('converts ms, s, m and h', () => {
    assert.equal(parseDurationMs('250ms'), 250);
    assert.equal(parseDurationMs('2s'), 2000);
    assert.equal(parseDurationMs('1.5s'), 1500);
    assert.equal(parseDurationMs('1m'), 60_000);
    assert.equal(parseDurationMs('2h'), 7_200_000);
  });
  it('refuses anything else with TRELLIS_E_CONFIG_INVALID', () => {
    for (const bad of ['2', '2 s', 's', '-1s', '1d']) {
      assert.throws(
        () => parseDurationMs(bad),
        (err: unknown) => err instanceof TrellisError && err.code === 'TRELLIS_E_CONFIG_INVALID',
      );
    }
  });
});
