// The baseline of an A/B run: another build of this repo whose Trellis pair runs beside
// this checkout's in the same max-rate rounds (and the 1 KB fixed rate), so that a
// data-plane change is judged against the code before it on the same machine, minutes
// apart at most (a shared machine's speed drifts by tens of percent over minutes).
//
// `--baseline DIR` names a checkout that is already built; `--baseline-ref REF` makes one:
// a detached git worktree of REF in the run's temp folder, its dependencies (this
// checkout's node_modules linked in when package-lock.json is the same, else `npm ci`),
// and `npm run build`. That worktree is removed when the bench ends, however it ends.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, symlinkSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import type { BaselineInfo } from './report.js';
import type { Processes } from './targets.js';

/** A baseline build ready to start; `remove()` deletes what the bench made for it (idempotent, synchronous for exit paths). */
export interface Baseline {
  readonly info: BaselineInfo;
  remove(): void;
}

/** Runs git in `cwd`; its trimmed stdout, or undefined when it fails (not a checkout, unknown ref). */
function git(cwd: string, args: readonly string[]): string | undefined {
  const r = spawnSync('git', ['-C', cwd, ...args], { encoding: 'utf8', timeout: 30_000, maxBuffer: 64 * 2 ** 20 });
  return r.status === 0 ? r.stdout.trim() : undefined;
}

/** The commit checked out in `dir`, and whether its tracked files differ from it; undefined if `dir` is not a git checkout. */
export function checkoutCommit(dir: string): { readonly commit: string; readonly dirty: boolean } | undefined {
  const commit = git(dir, ['rev-parse', 'HEAD']);
  if (commit === undefined) return undefined;
  // Untracked files (results, a linked node_modules) do not change what is built.
  return { commit, dirty: (git(dir, ['status', '--porcelain', '--untracked-files=no']) ?? '') !== '' };
}

/** Throws unless `dir` holds a built checkout of this repo (what startTrellisPair runs). */
export function checkBuilt(dir: string): void {
  for (const f of ['bin/trellis.js', 'dist/src/cli/main.js']) {
    if (!existsSync(path.join(dir, f))) {
      throw new Error(`--baseline ${dir}: ${f} is missing; it must be a checkout of this repo, built (npm ci && npm run build)`);
    }
  }
}

/** `--baseline DIR`: a checkout someone built; nothing to remove afterwards. */
export function existingBaseline(dir: string, repoRoot: string): Baseline {
  const abs = path.resolve(dir);
  checkBuilt(abs);
  return { info: infoOf(abs, repoRoot), remove: () => {} };
}

function infoOf(dir: string, repoRoot: string, ref?: string): BaselineInfo {
  const base = checkoutCommit(dir);
  const self = checkoutCommit(repoRoot);
  return {
    dir,
    ...(ref !== undefined ? { ref } : {}),
    ...(base ? { commit: base.commit, ...(base.dirty ? { dirty: true } : {}) } : {}),
    ...(self ? { trellisCommit: self.commit, ...(self.dirty ? { trellisDirty: true } : {}) } : {}),
  };
}

/**
 * `--baseline-ref REF`: checks REF out into `<runDir>/baseline-checkout` (a detached
 * worktree of `repoRoot`'s repository) and builds it. The commands run as processes of
 * `procs`, so a SIGINT stops them with everything else. `own` gets the worktree's
 * remover as soon as the worktree exists, so that whatever ends the bench (a SIGINT
 * during the build) removes it too. On failure the worktree is removed and the error thrown.
 */
export async function makeBaseline(o: {
  procs: Processes;
  repoRoot: string;
  runDir: string;
  ref: string;
  log: (msg: string) => void;
  own: (remove: () => void) => void;
}): Promise<Baseline> {
  const commit = git(o.repoRoot, ['rev-parse', '--verify', '--quiet', `${o.ref}^{commit}`]);
  if (commit === undefined) throw new Error(`--baseline-ref: "${o.ref}" is not a commit of ${o.repoRoot}`);
  const dir = path.join(o.runDir, 'baseline-checkout');
  const modules = path.join(dir, 'node_modules');
  o.log(`baseline: git worktree add ${dir} ${o.ref} (${commit.slice(0, 12)})`);
  const add = spawnSync('git', ['-C', o.repoRoot, 'worktree', 'add', '--detach', dir, commit], { encoding: 'utf8', timeout: 120_000 });
  if (add.status !== 0) throw new Error(`git worktree add failed: ${(add.stderr || add.error?.message || '').trim()}`);
  let removed = false;
  const remove = (): void => {
    if (removed) return;
    removed = true;
    // Unlinked first, so that nothing deleting the worktree can follow it into this checkout's node_modules.
    try {
      unlinkSync(modules);
    } catch {
      /* a real folder (npm ci), or none */
    }
    const r = spawnSync('git', ['-C', o.repoRoot, 'worktree', 'remove', '--force', dir], { encoding: 'utf8', timeout: 120_000 });
    if (r.status !== 0) {
      rmSync(dir, { recursive: true, force: true });
      spawnSync('git', ['-C', o.repoRoot, 'worktree', 'prune'], { timeout: 30_000 });
    }
  };
  o.own(remove);
  try {
    const sameLock = git(o.repoRoot, ['show', `${commit}:package-lock.json`]) === readFileSync(path.join(o.repoRoot, 'package-lock.json'), 'utf8').trim();
    if (sameLock && existsSync(path.join(o.repoRoot, 'node_modules'))) {
      // The same lock file installs the same packages: this checkout's, linked in, saves
      // the registry and a minute or more of npm ci.
      o.log("baseline: package-lock.json is the same as this checkout's: linking its node_modules");
      symlinkSync(path.join(o.repoRoot, 'node_modules'), modules, 'dir');
    } else {
      await run(o, dir, ['ci', '--no-audit', '--no-fund']);
    }
    await run(o, dir, ['run', 'build']);
    checkBuilt(dir);
  } catch (e) {
    remove();
    throw e;
  }
  return { info: infoOf(dir, o.repoRoot, o.ref), remove };
}

/** `npm <args>` in `dir` as a process of the bench; throws with the end of its output when it fails. */
async function run(o: { procs: Processes; log: (msg: string) => void }, dir: string, args: readonly string[]): Promise<void> {
  const what = `npm ${args.join(' ')}`;
  o.log(`baseline: ${what}`);
  const m = o.procs.start(`baseline ${what}`, 'npm', args, dir);
  const r = await m.exited;
  if (r.code !== 0) {
    const out = m.output().split('\n').slice(-5).join(' | ');
    throw new Error(`baseline: ${what} failed (${r.signal ?? `exit ${r.code}`})${out ? `: ${out}` : ''}`);
  }
}
