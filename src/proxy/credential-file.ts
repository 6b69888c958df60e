// `trellis proxy --credential-file PATH`: the proxy's join credential read from a file (a
// projected ServiceAccount token on Kubernetes), read again whenever it is used so a
// token the kubelet rotated is the one sent. The kubelet replaces the file atomically
// (a symlink swap), so a read sees the old token or the new one, never half of one.
import { readFile } from 'node:fs/promises';

/** Longest credential file read (a projected token is ~1 KB). */
const MAX_CREDENTIAL_BYTES = 16 * 1024;

export class CredentialFile {
  readonly #path: string;
  #last?: string;

  constructor(path: string) {
    this.#path = path;
  }

  /** The credential now in the file; the last good one when the file is briefly unreadable or empty. */
  async read(): Promise<string> {
    try {
      const text = (await readFile(this.#path, 'utf8')).trim();
      if (text.length > 0 && Buffer.byteLength(text) <= MAX_CREDENTIAL_BYTES) this.#last = text;
    } catch (err) {
      if (this.#last === undefined) throw err;
    }
    if (this.#last === undefined) throw new Error(`${this.#path}: no credential in the file (empty or larger than ${MAX_CREDENTIAL_BYTES} bytes)`);
    return this.#last;
  }
}

/** A function that reads the credential in `path` (as ControlClient's `credential` takes it). */
export function credentialReader(path: string): () => Promise<string> {
  const file = new CredentialFile(path);
  return () => file.read();
}
