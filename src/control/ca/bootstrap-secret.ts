// The bootstrap secret of a control plane started on its own (`trellis control` without
// `trellis up`): read from $TRELLIS_BOOTSTRAP_SECRET, or kept in the state folder
// (control/bootstrap-secret, mode 0600) and made there on first start, so credentials
// minted once (`trellis identity credential`) hold across restarts.
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { BOOTSTRAP_SECRET_ENV, newBootstrapSecret } from '../../security/bootstrap-credential.js';

/** The secret file in a state folder. */
export function bootstrapSecretFile(stateDir: string): string {
  return path.join(stateDir, 'control', 'bootstrap-secret');
}

/** The secret from the environment, else from the state folder (made when missing). */
export async function loadBootstrapSecret(stateDir: string, env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const fromEnv = env[BOOTSTRAP_SECRET_ENV];
  if (fromEnv) return fromEnv;
  const file = bootstrapSecretFile(stateDir);
  try {
    const text = (await readFile(file, 'utf8')).trim();
    if (text !== '') {
      await chmod(file, 0o600);
      return text;
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const secret = newBootstrapSecret();
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  await writeFile(file, `${secret}\n`, { mode: 0o600 });
  return secret;
}
