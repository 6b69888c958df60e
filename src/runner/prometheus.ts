// A Prometheus beside a local mesh (`trellis up`): Debian's `prometheus` binary, when it
// is installed, with a config generated into the mesh's state folder that discovers
// every proxy through the control plane's HTTP service discovery endpoint
// (/v1/prometheus/targets), and its own storage in a temporary folder that goes when it
// stops. Not installed: the runner says so in one line and the mesh runs without it.
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { HostPort } from '../api/protocol.js';
import { findOnPath } from './on-path.js';
import { Supervised } from './supervisor.js';

/** The program, as Debian's `prometheus` package installs it. */
export const PROMETHEUS_BINARY = 'prometheus';

/** What the runner's Prometheus scrapes, and how often. */
export interface PrometheusConfigOptions {
  /** The control plane's discovery URL (`<control>/v1/prometheus/targets`). */
  readonly targetsUrl: string;
  /** Scrape (and discovery refresh) interval, whole seconds of at least 1. */
  readonly scrapeIntervalS: number;
  /**
   * The control plane's admin token file: the discovery endpoint needs it, and
   * Prometheus reads it from there at every refresh (`authorization.credentials_file`),
   * so the token is never written into prometheus.yml. Absent: no authorization.
   */
  readonly tokenFile?: string;
}

/**
 * The generated prometheus.yml. The scrape timeout equals the interval (Prometheus's 10 s
 * default is refused under a shorter interval), and discovery is refreshed as often as
 * targets are scraped (its 60 s default would miss a short run's proxies).
 */
export function prometheusConfig(o: PrometheusConfigOptions): string {
  const interval = `${Math.max(1, Math.round(o.scrapeIntervalS))}s`;
  return [
    '# Written by `trellis up`: scrapes every proxy the control plane lists (Prometheus HTTP service discovery).',
    'global:',
    `  scrape_interval: ${interval}`,
    `  scrape_timeout: ${interval}`,
    `  evaluation_interval: ${interval}`,
    'scrape_configs:',
    '  - job_name: trellis-proxies',
    '    http_sd_configs:',
    `      - url: ${JSON.stringify(o.targetsUrl)}`,
    `        refresh_interval: ${interval}`,
    ...(o.tokenFile !== undefined ? ['        authorization:', '          type: Bearer', `          credentials_file: ${JSON.stringify(o.tokenFile)}`] : []),
    '',
  ].join('\n');
}

export interface PrometheusRunOptions extends PrometheusConfigOptions {
  /** Where it listens; the port is already chosen (never 0). */
  readonly listen: HostPort;
  /** The folder its config is written to (the mesh's state folder). */
  readonly configDir: string;
  readonly logFile: string;
  /** The executable; default: `prometheus` found on PATH. */
  readonly binary?: string;
  /** How long to wait for it to answer /-/ready (default 30 s). */
  readonly readyTimeoutMs?: number;
}

/** Why no Prometheus runs: one line for the runner to print. */
export interface PrometheusAbsent {
  readonly started: false;
  readonly reason: string;
}

/** A Prometheus started by the runner. */
export class RunningPrometheus {
  readonly started = true;
  readonly url: string;
  readonly configFile: string;
  readonly storageDir: string;
  readonly #process: Supervised;

  constructor(url: string, configFile: string, storageDir: string, process: Supervised) {
    this.url = url;
    this.configFile = configFile;
    this.storageDir = storageDir;
    this.#process = process;
  }

  get pid(): number | undefined {
    return this.#process.pid;
  }

  /** Stops it (SIGTERM, then SIGKILL) and removes its storage. */
  async stop(): Promise<void> {
    await this.#process.stop();
    await rm(this.storageDir, { recursive: true, force: true });
  }
}

/**
 * Starts Prometheus and waits until it is ready. Resolves with why not when the binary
 * is missing or it did not come up (then nothing of it is left running, and its storage
 * is removed): the mesh runs on without it.
 */
export async function startPrometheus(o: PrometheusRunOptions): Promise<RunningPrometheus | PrometheusAbsent> {
  const binary = o.binary ?? findOnPath(PROMETHEUS_BINARY);
  if (binary === undefined) {
    return {
      started: false,
      reason: `\`${PROMETHEUS_BINARY}\` is not on PATH (on Debian: apt-get install prometheus); point your own Prometheus's http_sd_configs at ${o.targetsUrl}`,
    };
  }
  await mkdir(o.configDir, { recursive: true });
  const configFile = join(o.configDir, 'prometheus.yml');
  await writeFile(configFile, prometheusConfig(o));
  const storageDir = await mkdtemp(join(tmpdir(), 'trellis-prometheus-'));
  const address = `${o.listen.host.includes(':') ? `[${o.listen.host}]` : o.listen.host}:${o.listen.port}`;
  const process = new Supervised({
    name: 'prometheus',
    command: [
      binary,
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${storageDir}`,
      `--web.listen-address=${address}`,
      // The mesh's run is short and its data temporary: no need to keep more.
      '--storage.tsdb.retention.time=1d',
    ],
    cwd: o.configDir,
    env: globalThis.process.env,
    logFile: o.logFile,
    // Restarting cannot fix what stops it (a bad flag, a taken port): say so instead.
    restart: false,
  });
  process.start();
  const running = new RunningPrometheus(`http://${address}`, configFile, storageDir, process);
  const problem = await waitReady(`${running.url}/-/ready`, o.readyTimeoutMs ?? 30_000, () => process.running);
  if (problem === undefined) return running;
  await running.stop();
  return { started: false, reason: `it did not become ready (${problem}); see ${o.logFile}` };
}

/** Polls `url` until it answers 200; undefined when it did, else the last problem. */
async function waitReady(url: string, timeoutMs: number, alive: () => boolean): Promise<string | undefined> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  while (Date.now() < deadline) {
    if (!alive()) return 'it exited';
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      if (res.ok) return undefined;
      last = `HTTP ${res.status}`;
    } catch (err) {
      last = err instanceof Error ? err.message : String(err);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return `${url}: ${last} after ${timeoutMs / 1000} s`;
}
