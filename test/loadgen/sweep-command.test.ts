// `trellis bench` end to end, the real CLI in a child process: the sweep finds the knee
// of a local server whose capacity is known (one request at a time, 2.5 ms each: at
// most 400 req/s), writes its report and plot, and bad flags exit 2.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { jsonApi, Servers, trellis } from './helpers.js';

const SERVICE_MS = 2.5;
const CAPACITY = 1000 / SERVICE_MS;

const servers = new Servers();
const dir = mkdtempSync(join(tmpdir(), 'trellis-bench-test-'));
let slowUrl: string;
let okUrl: string;
let control: string;
before(async () => {
  // The handler holds the (only) thread for the service time, so requests are served
  // strictly one after another: a capacity of 400 req/s, whatever the connections.
  slowUrl = (
    await servers.http((_req, res) => {
      const until = performance.now() + SERVICE_MS;
      while (performance.now() < until);
      res.end('ok');
    })
  ).url;
  okUrl = (await servers.http((_req, res) => res.end('ok'))).url;
  control = (
    await servers.http(
      jsonApi({
        '/v1/services': { services: [{ name: 'backend', protocol: 'http', public: null, upstreams: [], versions: [], instances: [] }] },
        '/v1/proxies': { proxies: [] },
      }),
    )
  ).url;
});
after(async () => {
  await servers.close();
  rmSync(dir, { recursive: true, force: true });
});

async function usageError(args: string[], message: RegExp): Promise<void> {
  const r = await trellis('bench', ...args);
  assert.equal(r.code, 2, `exit code of trellis bench ${args.join(' ')}: ${r.stderr}`);
  assert.match(r.stderr, message);
  assert.equal(r.stdout, '');
}

interface BenchJson {
  saturationRps: number | null;
  firstBadRps: number | null;
  stoppedBy: string;
  steps: { rate: number; ok: boolean; phase: string; latencyUs: { p99: number } }[];
  report: string | null;
  svg: string | null;
}

describe('trellis bench', () => {
  it('finds the knee of a server limited to 400 req/s, and writes the report and the plot', async () => {
    const report = join(dir, 'report.html');
    const svg = join(dir, 'plot.svg');
    const r = await trellis(
      'bench',
      slowUrl,
      '--json',
      '--step-duration',
      '700ms',
      '--warmup',
      '200ms',
      '--timeout',
      '1s',
      '--precision',
      '25',
      '--max-steps',
      '8',
      '--report',
      report,
      '--svg',
      svg,
    );
    assert.equal(r.code, 0, r.stderr);
    const j = JSON.parse(r.stdout) as BenchJson;
    const trace = j.steps.map((s) => `${s.rate}${s.ok ? ' ok' : ' over'}`).join(', ');
    assert.ok(j.saturationRps !== null && j.saturationRps >= 0.5 * CAPACITY && j.saturationRps <= 1.5 * CAPACITY, `saturation ${j.saturationRps} (${trace})`);
    assert.ok(j.firstBadRps !== null && j.firstBadRps > j.saturationRps!, trace);
    assert.deepEqual(
      j.steps.slice(0, 2).map((s) => [s.rate, s.phase]),
      [
        [100, 'exponential'],
        [200, 'exponential'],
      ],
    );
    assert.equal(j.report, report);
    const html = readFileSync(report, 'utf8');
    assert.match(html, new RegExp(`saturation: ~${j.saturationRps} req/s`));
    const plot = readFileSync(svg, 'utf8');
    for (const s of j.steps) assert.ok(plot.includes(`data-series="p99" data-rate="${s.rate}"`), `point at ${s.rate}`);
    assert.match(plot, /class="slo"/);
  });

  it('prints the table as it goes, then the saturation line', async () => {
    const r = await trellis('bench', okUrl, '--step-duration', '300ms', '--warmup', '0s', '--start-rate', '50', '--max-rate', '100', '--no-report');
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^step +phase +asked\/s +achieved\/s +p50 +p99 +p99\.9 +errors +verdict\n/);
    assert.match(r.stdout, /\n +1 +exponential +50\.0 +[\d.]+ +[\d.]+ ms +[\d.]+ ms +[\d.]+ ms +0\.00% +ok\n +2 +exponential +100 /);
    assert.match(r.stdout, /saturation: not reached up to --max-rate 100 req\/s \(highest rate meeting p99 ≤ 100 ms and success ≥ 99\.9%\)/);
    assert.doesNotMatch(r.stdout, /report:/);
  });

  it('exits 2 for bad sweep flags', async () => {
    await Promise.all([
      usageError([okUrl, '--slo-p99', '100'], /--slo-p99 must be a duration above 0 with a unit/),
      usageError([okUrl, '--slo-p99', '-5ms'], /--slo-p99 must be a duration above 0/),
      usageError([okUrl, '--min-success', '101'], /--min-success must be a percentage above 0 and at most 100/),
      usageError([okUrl, '--min-success', 'high'], /--min-success must be a percentage/),
      usageError([okUrl, '--precision', '0'], /--precision must be a percentage above 0 and below 100/),
      usageError([okUrl, '--start-rate', '0'], /--start-rate must be a number above 0 \(requests per second\); got "0"/),
      usageError([okUrl, '--start-rate', '-100'], /--start-rate must be a number above 0/),
      usageError([okUrl, '--start-rate', '500', '--max-rate', '200'], /--start-rate \(500\) is above --max-rate \(200\)/),
      usageError([okUrl, '--max-steps', '2.5'], /--max-steps must be a whole number above 0/),
      usageError([okUrl, '--step-duration', '0s'], /--step-duration must be a duration above 0/),
      usageError([okUrl, '--report', 'x.html', '--no-report'], /--report FILE or --no-report, not both/),
      usageError([okUrl, '--bogus'], /Unknown option '--bogus'.*trellis bench --help/),
    ]);
  });

  it('exits 2 for bad targets and request flags, as trellis load does', async () => {
    await Promise.all([
      usageError([], /name a TARGET/),
      usageError(['http://10.0.0.1:8080/'], /only loopback addresses/),
      usageError(['Not A Target!'], /neither an http:\/\/ URL nor a service name/),
      usageError([okUrl, '--header', 'no colon'], /--header expects 'Name: value'/),
      usageError([okUrl, '--connections', '0'], /--connections must be a whole number above 0/),
      usageError(['nosuch', '--from', 'frontend', '--control', control], /no service named "nosuch" in the mesh/),
      usageError(['backend', '--control', control], /backend is not public.*add --from SERVICE/),
    ]);
  });
});
