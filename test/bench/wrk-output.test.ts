// Reading wrk's `--latency` report: rates, percentiles in every unit wrk prints, errors.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseWrkDuration, parseWrkOutput } from '../../bench/wrk.js';

const SAMPLE = `Running 10s test @ http://127.0.0.1:8080/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   635.91us    0.89ms  12.92ms   93.69%
    Req/Sec    56.20k     3.87k   62.20k    82.00%
  Latency Distribution
     50%  321.00us
     75%  542.00us
     90%    1.07ms
     99%    2.01s
  559232 requests in 10.01s, 489.82MB read
  Socket errors: connect 0, read 3, write 1, timeout 7
  Non-2xx or 3xx responses: 2
Requests/sec:  55875.44
Transfer/sec:     48.94MB
`;

describe('wrk output', () => {
  it('reads requests per second, the latency distribution and the errors', () => {
    const r = parseWrkOutput(SAMPLE);
    assert.equal(r.rps, 55875.44);
    assert.equal(r.requests, 559232);
    assert.deepEqual(r.latencyUs, { p50: 321, p75: 542, p90: 1070, p99: 2_010_000 });
    assert.equal(r.non2xx, 2);
    assert.deepEqual(r.socketErrors, { connect: 0, read: 3, write: 1, timeout: 7 });
  });

  it('converts every duration unit to microseconds', () => {
    assert.equal(parseWrkDuration('12.50us'), 12.5);
    assert.equal(parseWrkDuration('1.50ms'), 1500);
    assert.equal(parseWrkDuration('2.00s'), 2_000_000);
    assert.equal(parseWrkDuration('1.00m'), 60_000_000);
  });

  it('refuses a report without the latency distribution', () => {
    assert.throws(() => parseWrkOutput(SAMPLE.replace(/Latency Distribution[\s\S]*?99%.*\n/, '')), /--latency/);
  });
});
