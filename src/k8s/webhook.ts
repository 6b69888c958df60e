// The mutating admission webhook that injects sidecars: an HTTPS server answering
// AdmissionReview v1 at /inject with a base64 JSON Patch (RFC 6902) made by injectPod
// (inject.ts). The kube-apiserver is its only caller, but anything that reaches the port
// may send anything: a body over the limit is 413, text that is not an AdmissionReview is
// 400, and a review it cannot use (not a Pod, no object) is allowed unchanged; no input
// throws past the handler. Refusing a pod is never its job (failurePolicy Ignore is set
// in the MutatingWebhookConfiguration): it allows every pod, injected or not.
//
// Its key pair is the Secret trellis-webhook-tls, which the control plane's leader issues
// from the mesh CA (src/k8s/source/webhook-tls.ts) and the kubelet writes into the pod's
// volume, maybe after the webhook started and again on every renewal: KeyPairFiles polls
// the files and puts a new pair in use without a restart; until a pair is there, TLS
// handshakes fail (failurePolicy Ignore lets pods start uninjected meanwhile).
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { readBody } from '../http-body.js';
import { TrellisError } from '../errors.js';
import { injectionPatch, injectPod, type InjectOptions, type K8sPod } from './inject.js';

/** The webhook's path (the MutatingWebhookConfiguration's clientConfig.service.path). */
export const INJECT_PATH = '/inject';
/**
 * Largest request body read (bytes). etcd keeps objects up to 1.5 MiB, and the review
 * carries the object (and, on UPDATE, the old one): 4 MiB holds any pod the API can store.
 */
export const DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024;

export interface AdmissionAnswer {
  readonly status: number;
  readonly body: unknown;
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

function review(uid: string, response: Record<string, unknown>): AdmissionAnswer {
  return { status: 200, body: { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid, allowed: true, ...response } } };
}

/**
 * The answer to one request body: an AdmissionReview v1 response (allowed, with a patch
 * when the pod was injected), or a 400 with the reason when the body is not a review.
 */
export function answerAdmission(text: string, options: Partial<InjectOptions> = {}): AdmissionAnswer {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { status: 400, body: { error: 'the body is not JSON: an AdmissionReview v1 was expected' } };
  }
  if (!isObject(parsed) || parsed.kind !== 'AdmissionReview' || parsed.apiVersion !== 'admission.k8s.io/v1' || !isObject(parsed.request)) {
    return { status: 400, body: { error: 'not an AdmissionReview (admission.k8s.io/v1) with a request' } };
  }
  const req = parsed.request;
  if (typeof req.uid !== 'string' || req.uid.length === 0 || req.uid.length > 128) {
    return { status: 400, body: { error: 'the AdmissionReview request has no uid' } };
  }
  const kind = isObject(req.kind) ? req.kind : {};
  if (kind.kind !== 'Pod' || (kind.group ?? '') !== '' || !isObject(req.object)) return review(req.uid, {});
  if (req.operation !== undefined && req.operation !== 'CREATE') return review(req.uid, {});
  try {
    const pod = req.object as K8sPod;
    // A pod made from a template has no namespace in its object yet: the review names it.
    const namespace = typeof req.namespace === 'string' ? req.namespace : undefined;
    const withNs = namespace && pod.metadata?.namespace === undefined ? { ...pod, metadata: { ...pod.metadata, namespace } } : pod;
    const result = injectPod(withNs, options);
    if (!result.injected) return review(req.uid, {});
    const patch = injectionPatch(pod, result.pod);
    return review(req.uid, { patchType: 'JSONPatch', patch: Buffer.from(JSON.stringify(patch)).toString('base64') });
  } catch {
    // A pod shaped so that injection cannot read it (a container that is not an object, a
    // port out of range): let it through uninjected rather than fail the API request.
    return review(req.uid, {});
  }
}

export interface WebhookOptions {
  /** The key pair; absent: no handshake succeeds until one is set (KeyPairFiles). */
  readonly cert?: string | Buffer;
  readonly key?: string | Buffer;
  readonly maxBodyBytes?: number;
  readonly inject?: Partial<InjectOptions>;
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function handle(req: IncomingMessage, res: ServerResponse, o: WebhookOptions): Promise<void> {
  const path = (req.url ?? '').split('?')[0];
  if (path === '/ready' && req.method === 'GET') return send(res, 200, { ready: true });
  if (path !== INJECT_PATH) return send(res, 404, { error: `no such path; the webhook answers POST ${INJECT_PATH}` });
  if (req.method !== 'POST') return send(res, 405, { error: `POST ${INJECT_PATH} only` });
  let text: string;
  try {
    text = await readBody(req, o.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES);
  } catch (err) {
    if (err instanceof TrellisError) return send(res, err.status, { error: err.message });
    res.destroy();
    return;
  }
  const answer = answerAdmission(text, o.inject);
  send(res, answer.status, answer.body);
}

/** The webhook's HTTPS server (not listening yet). */
export function createInjectionWebhook(o: WebhookOptions): Server {
  const server = createServer({ ...(o.cert && o.key ? { cert: o.cert, key: o.key } : {}), minVersion: 'TLSv1.2' }, (req, res) => {
    handle(req, res, o).catch(() => res.destroy());
  });
  // The apiserver's call times out at 10 s (timeoutSeconds's default); nothing needs longer.
  server.requestTimeout = 10_000;
  server.headersTimeout = 10_000;
  return server;
}

/** How often KeyPairFiles reads the files (the kubelet updates a mounted Secret within about a minute). */
export const DEFAULT_KEY_PAIR_POLL_MS = 5_000;

export interface KeyPairFilesOptions {
  readonly server: Server;
  readonly certFile: string;
  readonly keyFile: string;
  readonly pollMs?: number;
  readonly log: (line: string) => void;
}

/**
 * Puts the key pair in `certFile` and `keyFile` in use by `server` when the files appear
 * or change. A pair that does not load (missing, half written, key and certificate not
 * matching while the kubelet swaps them) leaves the one in use, and is said once.
 */
export class KeyPairFiles {
  readonly #o: KeyPairFilesOptions;
  #timer?: NodeJS.Timeout;
  /** The contents last tried, loaded or not: the same files are not loaded or logged again. */
  #seen = '';
  #loaded = false;

  constructor(o: KeyPairFilesOptions) {
    this.#o = o;
  }

  /** Whether a pair is in use. */
  get loaded(): boolean {
    return this.#loaded;
  }

  /** Reads the files once; true when a new pair was put in use. */
  async load(): Promise<boolean> {
    const [cert, key] = await Promise.all([this.#o.certFile, this.#o.keyFile].map((f) => readFile(f, 'utf8').catch(() => undefined)));
    if (cert === undefined || key === undefined) {
      if (this.#seen !== 'missing') this.#o.log(`webhook: waiting for ${this.#o.certFile} and ${this.#o.keyFile} (TLS is refused until then)`);
      this.#seen = 'missing';
      return false;
    }
    const seen = `${cert}\0${key}`;
    if (seen === this.#seen) return false;
    this.#seen = seen;
    try {
      this.#o.server.setSecureContext({ cert, key, minVersion: 'TLSv1.2' });
    } catch (err) {
      this.#o.log(
        `webhook: the key pair in ${this.#o.certFile} does not load (${err instanceof Error ? err.message : String(err)}); ${this.#loaded ? 'keeping the one in use' : 'TLS is refused until it does'}`,
      );
      return false;
    }
    this.#o.log(`webhook: ${this.#loaded ? 'reloaded' : 'loaded'} the key pair in ${this.#o.certFile}`);
    this.#loaded = true;
    return true;
  }

  start(): void {
    if (this.#timer) return;
    this.#timer = setInterval(() => void this.load(), this.#o.pollMs ?? DEFAULT_KEY_PAIR_POLL_MS);
    this.#timer.unref();
  }

  stop(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }
}
