// The admin API's credential: a bearer token. The control plane keeps it in its state
// folder (`<state>/control/admin-token`, mode 0600, folder 0700), made on first start and
// reused after (a restart keeps what the runner, the CLI and Prometheus already hold), or
// takes it from $TRELLIS_ADMIN_TOKEN or a file (`trellis control --admin-token-file`).
// The CLI finds it without being told: a control plane started with a token file leaves
// a pointer to that file (never the token) in the user's Trellis folder, named after the
// address it listens on, and removes it when it stops; as kubectl finds its kubeconfig.
// Both sides import this neutral module (it imports nothing of control, proxy or cli).
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { chmod, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';

/** The environment variable a token can be given in (the CLI and a standalone control plane read it). */
export const ADMIN_TOKEN_ENV = 'TRELLIS_ADMIN_TOKEN';
/** The user's Trellis folder, where pointers to running control planes' token files are kept (default ~/.trellis). */
export const TRELLIS_HOME_ENV = 'TRELLIS_HOME';

const PREFIX = 'tat1.';

/** Where the admin API's address and credential are: what every admin API client needs. */
export interface AdminTarget {
  /** `http://host:port`, without a trailing slash. */
  readonly url: string;
  /** Sent as `Authorization: Bearer <token>`; undefined: none found (the control plane answers 401, saying how to give one). */
  readonly token: string | undefined;
}

/** A new random admin token (32 bytes). */
export function newAdminToken(): string {
  return `${PREFIX}${randomBytes(32).toString('base64url')}`;
}

/** The token file in a state folder. */
export function adminTokenFile(stateDir: string): string {
  return path.join(stateDir, 'control', 'admin-token');
}

/** The headers that carry a token (none without one). */
export function adminHeaders(token: string | undefined): Record<string, string> {
  return token === undefined ? {} : { authorization: `Bearer ${token}` };
}

/** The token in a file (its first line, trimmed); rejects when the file is missing or empty. */
export async function readAdminTokenFile(file: string): Promise<string> {
  const text = (await readFile(file, 'utf8')).split('\n')[0]?.trim() ?? '';
  if (text === '') throw new Error(`${file} is empty`);
  return text;
}

/** The token kept in the state folder, made there (0600) when missing. */
export async function loadOrCreateAdminToken(stateDir: string): Promise<string> {
  const file = adminTokenFile(stateDir);
  try {
    const token = await readAdminTokenFile(file);
    await chmod(file, 0o600);
    return token;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== undefined && code !== 'ENOENT') throw err;
  }
  const token = newAdminToken();
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  await writeFile(file, `${token}\n`, { mode: 0o600 });
  await chmod(file, 0o600); // writeFile's mode is ignored when the file already existed (empty)
  return token;
}

/**
 * A constant-time check of a presented token against the expected one: both are hashed
 * first, so the comparison takes the same time whatever the lengths.
 */
export class AdminTokenCheck {
  readonly #expected: Buffer;
  constructor(token: string) {
    this.#expected = digest(token);
  }
  matches(given: string): boolean {
    return timingSafeEqual(digest(given), this.#expected);
  }
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

function trellisHome(env: NodeJS.ProcessEnv): string {
  return env[TRELLIS_HOME_ENV] || path.join(homedir(), '.trellis');
}

/** The pointer file of the control plane at `url` (one per listening address). */
export function controlPointerFile(url: string, env: NodeJS.ProcessEnv = process.env): string {
  const host = new URL(url).host.replace(/[^A-Za-z0-9.-]/g, '_');
  return path.join(trellisHome(env), 'controls', `${host}.json`);
}

interface ControlPointer {
  url: string;
  tokenFile: string;
  pid: number;
}

/** Leaves a pointer to the token file for the CLI (0600, folder 0700). */
export async function registerControl(url: string, tokenFile: string, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const file = controlPointerFile(url, env);
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const pointer: ControlPointer = { url, tokenFile: path.resolve(tokenFile), pid: process.pid };
  await writeFile(file, `${JSON.stringify(pointer)}\n`, { mode: 0o600 });
}

/** Removes the pointer, when it is still this process's (another control plane may have taken the address since). */
export async function unregisterControl(url: string, env: NodeJS.ProcessEnv = process.env): Promise<void> {
  const file = controlPointerFile(url, env);
  try {
    const pointer = JSON.parse(await readFile(file, 'utf8')) as Partial<ControlPointer>;
    if (pointer.pid === process.pid) await rm(file, { force: true });
  } catch {
    // Gone or unreadable: nothing of ours to remove.
  }
}

/** Where a client's token comes from, first found wins. */
export interface AdminTokenSources {
  /** The control plane's URL (its pointer is looked up by address). */
  readonly url: string;
  /** `--admin-token-file`. */
  readonly tokenFile?: string | undefined;
  /** `--state-dir`: the token in that state folder. */
  readonly stateDir?: string | undefined;
  readonly env?: NodeJS.ProcessEnv;
}

/**
 * The token a client sends: --admin-token-file, then $TRELLIS_ADMIN_TOKEN, then the
 * state folder given, then the pointer a control plane left for its address. Undefined
 * when none is found; a file named by a flag that cannot be read rejects.
 */
export async function resolveAdminToken(o: AdminTokenSources): Promise<string | undefined> {
  const env = o.env ?? process.env;
  if (o.tokenFile !== undefined) return readAdminTokenFile(o.tokenFile);
  const fromEnv = env[ADMIN_TOKEN_ENV]?.trim();
  if (fromEnv) return fromEnv;
  if (o.stateDir !== undefined) return readAdminTokenFile(adminTokenFile(o.stateDir));
  try {
    const pointer = JSON.parse(await readFile(controlPointerFile(o.url, env), 'utf8')) as Partial<ControlPointer>;
    if (typeof pointer.tokenFile === 'string') return await readAdminTokenFile(pointer.tokenFile);
  } catch {
    // No pointer (a control plane started elsewhere, or by an older Trellis): none found.
  }
  return undefined;
}
