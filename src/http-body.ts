// Reading a small request body on an admin server (the control plane's admin API and
// dashboard, a proxy's /explain): at most `limit` bytes are kept; a longer body is read
// to its end without keeping it (so the 413 goes out on a connection still in step)
// and refused with TRELLIS_E_BODY_TOO_LARGE. Neutral: both sides import it.
import type { IncomingMessage } from 'node:http';
import { TrellisError } from './errors.js';

/** The body as text; TRELLIS_E_BODY_TOO_LARGE past `limit` bytes. */
export function readBody(req: IncomingMessage, limit: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size <= limit) chunks.push(c);
    });
    req.on('end', () => {
      if (size > limit) reject(new TrellisError('TRELLIS_E_BODY_TOO_LARGE', { limit }));
      else resolve(Buffer.concat(chunks).toString('utf8'));
    });
    req.on('error', reject);
  });
}
