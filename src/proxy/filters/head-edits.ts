// The request head edits of one exchange. Requests on routes without request filters
// never create one and keep the fast path (the raw head bytes forwarded as received);
// once a filter edits the head, the forwarder re-serializes it from these lines.
import type { RequestHead } from '../../http1/http1-parser.js';
import { serializeRequestHead } from '../../http1/http1-parser.js';
import { editLines, type HeaderModifier } from './header-modifier.js';
import { queryOf } from './path-modifier.js';

export class HeadEdits {
  /** Header lines (`Name: value`) as they will be sent. */
  lines: readonly string[];
  /** Path of the target as it will be sent, without the query string. */
  path: string;
  #query: string;

  constructor(req: RequestHead) {
    this.lines = req.lines;
    this.path = req.path;
    this.#query = queryOf(req.target);
  }

  headers(m: HeaderModifier): void {
    this.lines = editLines(this.lines, m);
  }

  /** Replaces the Host header (URLRewrite hostname). */
  host(name: string): void {
    this.lines = editLines(this.lines, { drop: HOST, append: [`host: ${name}`] });
  }

  /** Drops every `name=...` (and bare `name`) pair from the query (a JWT read from a query parameter that is not forwarded). */
  dropQueryParam(name: string): void {
    if (this.#query === '') return;
    const kept = this.#query
      .slice(1)
      .split('&')
      .filter((pair) => {
        const eq = pair.indexOf('=');
        return (eq === -1 ? pair : pair.slice(0, eq)) !== name;
      });
    this.#query = kept.length > 0 ? `?${kept.join('&')}` : '';
  }

  /** The request target as it will be sent (HTTP/2's `:path`). */
  get target(): string {
    return this.path + this.#query;
  }

  /**
   * The head for the next hop: hop-by-hop headers dropped (as for any rewritten head),
   * `extra` lines added, and an Upgrade only for `upgradeTo` (see serializeRequestHead).
   */
  serialize(req: RequestHead, extra: string, upgradeTo = ''): string {
    return serializeRequestHead({ ...req, lines: this.lines, target: this.path + this.#query }, extra, upgradeTo);
  }
}

const HOST: ReadonlySet<string> = new Set(['host']);
