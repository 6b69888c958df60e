// RequestRedirect: answers the client with its status (301, 302, 303, 307 or 308) and a Location built from the
// request and the filter. The port follows the Gateway API: the filter's port; else
// the well-known port of a scheme the filter sets; else the port the request came to
// (from its Host header). Port 80 on http and 443 on https are left out of Location.
import type { RouteFilter } from '../../api/protocol.js';
import type { Exchange } from '../stack/exchange.js';
import { modifyPath, queryOf } from './path-modifier.js';

type RedirectSpec = Extract<RouteFilter, { type: 'RequestRedirect' }>;

function splitHost(host: string): { name: string; port: number | undefined } {
  if (host.startsWith('[')) {
    const close = host.indexOf(']');
    const port = host.charCodeAt(close + 1) === 58 ? Number(host.slice(close + 2)) : undefined;
    return { name: host.slice(0, close + 1), port };
  }
  const colon = host.lastIndexOf(':');
  return colon === -1 ? { name: host, port: undefined } : { name: host.slice(0, colon), port: Number(host.slice(colon + 1)) || undefined };
}

/** The Location of the redirect for a request to `host` with `target`. */
export function redirectLocation(spec: RedirectSpec, host: string, target: string, path: string, matchedPrefix: string): string {
  const scheme = spec.scheme ?? 'http'; // the mesh's listeners speak plain HTTP
  const { name, port: requestPort } = splitHost(host);
  const port = spec.port ?? (spec.scheme !== undefined ? (spec.scheme === 'https' ? 443 : 80) : requestPort);
  const showPort = port !== undefined && !((scheme === 'http' && port === 80) || (scheme === 'https' && port === 443));
  const newPath = spec.path ? modifyPath(path, spec.path, matchedPrefix) : path;
  return `${scheme}://${spec.hostname ?? name}${showPort ? `:${port}` : ''}${newPath}${queryOf(target)}`;
}

export function redirect(ex: Exchange, spec: RedirectSpec, matchedPrefix: string): void {
  const location = redirectLocation(spec, ex.req.host, ex.req.target, ex.req.path, matchedPrefix);
  ex.respond(spec.statusCode, `location: ${location}\r\n`);
}
