// Test helper: one HTTP/2 request on a session, collecting the response's headers,
// trailers and body (as text).
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { sniffPreface } from '../../src/proxy/listeners/detect.js';

export interface H2Result {
  status: number;
  headers: http2.IncomingHttpHeaders;
  trailers: http2.IncomingHttpHeaders;
  body: string;
}

export function h2Request(
  session: http2.ClientHttp2Session,
  headers: http2.OutgoingHttpHeaders,
  body?: string,
  trailers?: Record<string, string>,
): Promise<H2Result> {
  return new Promise((resolve, reject) => {
    const req = session.request(headers, { endStream: body === undefined, waitForTrailers: trailers !== undefined });
    if (trailers !== undefined) req.on('wantTrailers', () => req.sendTrailers(trailers));
    let status = 0;
    let resHeaders: http2.IncomingHttpHeaders = {};
    let resTrailers: http2.IncomingHttpHeaders = {};
    let text = '';
    req.on('response', (h) => {
      status = Number(h[':status']);
      resHeaders = h;
    });
    req.on('trailers', (t) => {
      resTrailers = t;
    });
    req.setEncoding('utf8');
    req.on('data', (c: string) => {
      text += c;
    });
    req.on('end', () => resolve({ status, headers: resHeaders, trailers: resTrailers, body: text }));
    req.on('error', reject);
    if (body !== undefined) req.end(body);
  });
}

/** A handler node's HTTP/1.1 and HTTP/2 servers both take. */
export type H1OrH2Handler = (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => void;

/**
 * An app answering HTTP/1.1 and h2c (prior knowledge) on one port, with one handler:
 * node's h2c server alone can't. Client errors end that connection only.
 */
export async function listenH1AndH2(handler: H1OrH2Handler): Promise<{ server: net.Server; port: number; h1: http.Server; h2: http2.Http2Server }> {
  const h1 = http.createServer(handler);
  const h2 = http2.createServer(handler);
  h2.on('session', (s) => s.on('error', () => {}));
  const server = net.createServer((socket) => {
    socket.on('error', () => socket.destroy());
    socket.once('data', (first: Buffer) => {
      if (sniffPreface(first) === 'h1') {
        // node's HTTP/1 server reads the socket's handle directly: hand it the first bytes as an event.
        h1.emit('connection', socket);
        socket.emit('data', first);
      } else {
        socket.pause();
        socket.unshift(first);
        h2.emit('connection', socket);
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as net.AddressInfo).port, h1, h2 };
}
