// Test helper: one HTTP/2 request on a session, collecting the response's headers,
// trailers and body (as text).
import type http2 from 'node:http2';

export interface H2Result { status: number; headers: http2.IncomingHttpHeaders; trailers: http2.IncomingHttpHeaders; body: string }

export function h2Request(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: string, trailers?: Record<string, string>): Promise<H2Result> {
  return new Promise((resolve, reject) => {
    const req = session.request(headers, { endStream: body === undefined, waitForTrailers: trailers !== undefined });
    if (trailers !== undefined) req.on('wantTrailers', () => req.sendTrailers(trailers));
    let status = 0;
    let resHeaders: http2.IncomingHttpHeaders = {};
    let resTrailers: http2.IncomingHttpHeaders = {};
    let text = '';
    req.on('response', (h) => { status = Number(h[':status']); resHeaders = h; });
    req.on('trailers', (t) => { resTrailers = t; });
    req.setEncoding('utf8');
    req.on('data', (c: string) => { text += c; });
    req.on('end', () => resolve({ status, headers: resHeaders, trailers: resTrailers, body: text }));
    req.on('error', reject);
    if (body !== undefined) req.end(body);
  });
}
