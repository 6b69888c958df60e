// Fingerprints of the config files and their folders, so the config watcher can tell
// whether what it loaded is still what is on disk. fs.watch alone cannot: it coalesces
// events, drops the ones queued for a watcher it closes, and sees nothing when a
// Kubernetes ConfigMap swaps its `..data` symlink. A fingerprint taken before a load
// and compared after it (and on a slow poll) catches every write those miss.
import { createHash } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';

/** Path → fingerprint; a missing file or folder has one too ('missing'). */
export type Fingerprints = ReadonlyMap<string, string>;

/**
 * A file: identity, size and times (which change on every write, including an
 * editor's write-then-rename) plus a content hash (for file systems whose timestamps
 * are too coarse to tell two writes in the same second apart). `stat` follows
 * symlinks, so a swapped link target shows as a new inode.
 */
async function fileFingerprint(file: string): Promise<string> {
  try {
    const s = await stat(file, { bigint: true });
    if (s.isDirectory()) return 'directory';
    const hash = createHash('sha256')
      .update(await readFile(file))
      .digest('base64url');
    return `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}:${hash}`;
  } catch {
    return 'missing';
  }
}

/** A folder: the config file names in it, so an added or removed file counts as a change. */
async function folderFingerprint(dir: string, isConfigFile: (name: string) => boolean): Promise<string> {
  try {
    const names = (await readdir(dir)).filter(isConfigFile).sort();
    return `dir:${names.join('\n')}`;
  } catch {
    return 'missing';
  }
}

/** Fingerprints of `files` and `folders` (absolute paths), read now. */
export async function fingerprint(files: Iterable<string>, folders: Iterable<string>, isConfigFile: (name: string) => boolean): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const jobs: Promise<void>[] = [];
  for (const f of new Set(files)) jobs.push(fileFingerprint(f).then((v) => void out.set(f, v)));
  for (const d of new Set(folders)) jobs.push(folderFingerprint(d, isConfigFile).then((v) => void out.set(`${d}/`, v)));
  await Promise.all(jobs);
  return out;
}

/**
 * Whether `now` shows anything `before` did not: a path whose fingerprint differs, or a
 * path `before` never fingerprinted (it was not known when the load started, so what
 * was read of it is unknown).
 */
export function changedSince(before: Fingerprints, now: Fingerprints): string[] {
  const changed: string[] = [];
  for (const [p, v] of now) if (before.get(p) !== v) changed.push(p);
  return changed;
}
