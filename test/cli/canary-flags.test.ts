// `trellis canary`'s own flags: steps are whole percents from 1 to 100, rising; limits
// are percents from 0 to 100. Anything else is TRELLIS_E_USAGE (exit 2) with the reason.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parsePercent, parseSteps } from '../../src/cli/canary.js';
import { TrellisError } from '../../src/errors.js';

test('steps and percents', () => {
  assert.deepEqual(parseSteps('5,25,50,100'), [5, 25, 50, 100]);
  assert.deepEqual(parseSteps('10%, 100%'), [10, 100]);
  for (const bad of ['0,50', '50,25', '5,,10', '101', 'half']) {
    assert.throws(
      () => parseSteps(bad),
      (e: unknown) => e instanceof TrellisError && e.code === 'TRELLIS_E_USAGE',
      bad,
    );
  }
  assert.equal(parsePercent('1%', '--max-error-rate'), 0.01);
  assert.equal(parsePercent('0.5', '--max-error-rate'), 0.005);
  assert.throws(() => parsePercent('150%', '--max-error-rate'), /expects a percent from 0 to 100/);
});
