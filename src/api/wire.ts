// The control stream's wire format, shared by both ends: newline-delimited JSON. Splits
// incoming bytes into lines (each end with its own bound), writes messages, and turns
// a proxy's line into a checked ProxyMessage (the control plane trusts nothing a proxy
// sends).
import { StringDecoder } from 'node:string_decoder';
import type { Duplex } from 'node:stream';
import { TrellisError } from '../errors.js';
import type { ControlMessage, HostPort, ProxyInfo, ProxyMessage } from './protocol.js';

/** Longest bootstrap credential accepted in a hello (Trellis's are 48 characters; a Kubernetes token is a few KiB). */
export const MAX_CREDENTIAL_CHARS = 8192;

/** Longest line accepted from a proxy; a hello is a few hundred bytes. */
export const MAX_LINE_BYTES = 1024 * 1024;

/** Buffers chunks and hands out complete lines (without the newline). */
export class LineReader {
  readonly #decoder = new StringDecoder('utf8');
  readonly #max: number;
  #partial = '';

  constructor(maxLineBytes = MAX_LINE_BYTES) {
    this.#max = maxLineBytes;
  }

  /**
   * Returns the complete lines in `chunk`; throws TRELLIS_E_BAD_REQUEST when a line grows
   * past the limit. Only a chunk that brings a newline is split: splitting all that is
   * pending on every chunk made a long line cost its length squared.
   */
  push(chunk: Buffer): string[] {
    const text = this.#decoder.write(chunk);
    if (text.indexOf('\n') === -1) {
      this.#partial += text;
      if (this.#partial.length > this.#max) throw new TrellisError('TRELLIS_E_BAD_REQUEST', { reason: `a message is longer than ${this.#max} bytes` });
      return [];
    }
    const parts = (this.#partial + text).split('\n');
    this.#partial = parts.pop() ?? '';
    if (this.#partial.length > this.#max) throw new TrellisError('TRELLIS_E_BAD_REQUEST', { reason: `a message is longer than ${this.#max} bytes` });
    return parts.map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l)).filter((l) => l.trim() !== '');
  }
}

/** Writes one message (either end's) as a line. */
export function writeMessage(socket: Duplex, message: ControlMessage | ProxyMessage): void {
  if (!socket.destroyed && socket.writable) socket.write(`${JSON.stringify(message)}\n`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isHostPort(v: unknown): v is HostPort {
  return isObject(v) && typeof v.host === 'string' && typeof v.port === 'number' && Number.isInteger(v.port);
}

/**
 * What a proxy calls itself ends up in the control plane's log lines, in other proxies'
 * snapshots (an endpoint's version) and so in their metric labels: printable ASCII
 * without spaces, at most 253 characters (a DNS name's length).
 */
const PROXY_NAME = /^[\x21-\x7e]{1,253}$/;

/** A NACK's reason is logged and shown by the admin API: control characters escaped, at most 1,024 characters. */
function loggable(s: string): string {
  const escaped = s.replace(/[\x00-\x1f\x7f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  return escaped.length <= 1024 ? escaped : `${escaped.slice(0, 1024)}…`;
}

/** The most ports a hello may list (the Mesh kind's limit per service, src/config/schema/mesh.ts). */
const MAX_PORTS = 32;

function checkProxyInfo(v: unknown): string | undefined {
  if (!isObject(v)) return 'hello.proxy must be an object';
  for (const key of ['id', 'service', 'version'] as const) {
    if (typeof v[key] !== 'string' || v[key] === '') return `hello.proxy.${key} must be a non-empty string`;
    if (!PROXY_NAME.test(v[key])) return `hello.proxy.${key} must be printable ASCII without spaces, at most 253 characters`;
  }
  if (v.kind !== 'sidecar' && v.kind !== 'gateway') return 'hello.proxy.kind must be "sidecar" or "gateway"';
  if (!isHostPort(v.admin)) return 'hello.proxy.admin must be {host, port}';
  for (const key of ['app', 'inbound', 'httpProxy'] as const) {
    if (v[key] !== undefined && !isHostPort(v[key])) return `hello.proxy.${key} must be {host, port}`;
  }
  if (!Array.isArray(v.upstreams)) return 'hello.proxy.upstreams must be an array';
  for (const [i, u] of v.upstreams.entries()) {
    if (!isObject(u) || typeof u.service !== 'string' || !isHostPort(u.listen)) {
      return `hello.proxy.upstreams[${i}] must be {service, listen: {host, port}}`;
    }
  }
  if (v.ports !== undefined) {
    // A proxy's ports become endpoints in other proxies' snapshots: bounded, and each a real port number.
    if (!Array.isArray(v.ports) || v.ports.length === 0 || v.ports.length > MAX_PORTS) return `hello.proxy.ports must be an array of 1 to ${MAX_PORTS} ports`;
    for (const [i, p] of v.ports.entries()) {
      if (!isObject(p) || !Number.isInteger(p.port) || (p.port as number) < 1 || (p.port as number) > 65535 || !isHostPort(p.app) || !isHostPort(p.inbound)) {
        return `hello.proxy.ports[${i}] must be {port (1-65535), app: {host, port}, inbound: {host, port}}`;
      }
    }
  }
  if (typeof v.pid !== 'number') return 'hello.proxy.pid must be a number';
  return undefined;
}

/** Parses one line from a proxy; a string result is what is wrong with it. */
export function parseProxyMessage(line: string): ProxyMessage | string {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return 'a message is not valid JSON';
  }
  if (!isObject(value)) return 'a message must be a JSON object';
  switch (value.type) {
    case 'hello': {
      const problem = checkProxyInfo(value.proxy);
      if (problem) return problem;
      if (value.credential !== undefined && (typeof value.credential !== 'string' || value.credential.length > MAX_CREDENTIAL_CHARS)) {
        return `hello.credential must be a string of at most ${MAX_CREDENTIAL_CHARS} characters`;
      }
      const proxy = value.proxy as unknown as ProxyInfo;
      return typeof value.credential === 'string' ? { type: 'hello', proxy, credential: value.credential } : { type: 'hello', proxy };
    }
    case 'csr':
      if (typeof value.id !== 'number' || !Number.isSafeInteger(value.id) || value.id < 0) return 'csr.id must be a non-negative integer';
      // The CA checks the CSR itself (src/control/ca/csr.ts) and answers with a reason; here only its type.
      if (typeof value.csr !== 'string') return 'csr.csr must be a PEM string';
      return { type: 'csr', id: value.id, csr: value.csr };
    case 'ack':
      return typeof value.version === 'number' ? { type: 'ack', version: value.version } : 'ack.version must be a number';
    case 'nack':
      if (typeof value.version !== 'number') return 'nack.version must be a number';
      return { type: 'nack', version: value.version, error: loggable(typeof value.error === 'string' ? value.error : String(value.error)) };
    case 'ping':
      return { type: 'ping' };
    case 'resync':
      return typeof value.version === 'number' ? { type: 'resync', version: value.version } : { type: 'resync' };
    case 'rate-demand':
      return checkRateDemand(value);
    default:
      return `unknown message type ${JSON.stringify(value.type)}`;
  }
}

/** Most global limits a demand report may name (a policy has at most 16 limits; a service a few policies). */
const MAX_DEMAND_LIMITS = 256;

/** A rate-demand message, checked: ids are short strings, counts non-negative numbers. */
function checkRateDemand(value: Record<string, unknown>): ProxyMessage | string {
  const { intervalMs, limits } = value;
  if (typeof intervalMs !== 'number' || !Number.isFinite(intervalMs) || intervalMs <= 0) return 'rate-demand.intervalMs must be a positive number';
  if (!Array.isArray(limits) || limits.length > MAX_DEMAND_LIMITS) return `rate-demand.limits must be an array of at most ${MAX_DEMAND_LIMITS}`;
  const out: { id: string; requests: number }[] = [];
  for (const l of limits as unknown[]) {
    if (!isObject(l) || typeof l.id !== 'string' || l.id.length > 512) return 'rate-demand.limits[].id must be a string of at most 512 characters';
    if (typeof l.requests !== 'number' || !Number.isFinite(l.requests) || l.requests < 0) return 'rate-demand.limits[].requests must be a non-negative number';
    out.push({ id: l.id, requests: l.requests });
  }
  return { type: 'rate-demand', intervalMs, limits: out };
}
