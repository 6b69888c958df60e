// Real `trellis` processes for end-to-end tests: each started with the CLI of this build
// and its own TRELLIS_HOME, its output kept for assertions and for the message when it
// exits before saying what the test waits for; all stopped (SIGTERM, SIGKILL after 5 s)
// when the test ends, passing or failing.
import { spawn, type ChildProcess } from 'node:child_process';
import assert from 'node:assert/strict';
import { eventually } from './eventually.js';
import { TRELLIS } from './mesh-run.js';

export interface Proc {
  readonly child: ChildProcess;
  /** stdout and stderr so far. */
  output: string;
}

export class TrellisProcesses {
  /** In the order started. */
  readonly procs: Proc[] = [];
  /** TRELLIS_HOME of every process (set before the first start). */
  home = '';

  /** Starts `trellis <args>`. */
  start(args: string[]): Proc {
    const child = spawn(process.execPath, [TRELLIS, ...args], { env: { ...process.env, TRELLIS_HOME: this.home }, stdio: ['ignore', 'pipe', 'pipe'] });
    const p: Proc = { child, output: '' };
    child.stdout?.on('data', (b: Buffer) => (p.output += b.toString('utf8')));
    child.stderr?.on('data', (b: Buffer) => (p.output += b.toString('utf8')));
    this.procs.push(p);
    return p;
  }

  /** The first match of `re` in `p`'s output; fails at once, with the output, if `p` exits first. */
  waitFor(p: Proc, re: RegExp, what: string): Promise<RegExpMatchArray> {
    return eventually(() => p.output.match(re) ?? (p.child.exitCode !== null ? assert.fail(`${what}: exited ${p.child.exitCode}:\n${p.output}`) : false), {
      timeoutMs: 30_000,
      what,
    });
  }

  /** Stops every process and waits for each to exit. */
  async stop(): Promise<void> {
    await Promise.all(
      this.procs.map(
        (p) =>
          new Promise<void>((resolve) => {
            if (p.child.exitCode !== null || p.child.signalCode !== null) return resolve();
            p.child.once('exit', () => resolve());
            p.child.kill('SIGTERM');
            setTimeout(() => p.child.kill('SIGKILL'), 5000).unref();
          }),
      ),
    );
  }
}
