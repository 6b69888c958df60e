// Test helper: an OTLP/HTTP JSON collector on a loopback port, keeping every span it is
// sent (flattened, with its resource's service.name). `stall` makes it hold requests
// unanswered, as a slow collector would.
import http from 'node:http';
import type net from 'node:net';

export interface CollectedSpan {
  service: string;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  attributes: Record<string, string | number | boolean>;
  error: boolean;
  start: bigint;
  end: bigint;
}

export interface Collector {
  readonly url: string;
  readonly spans: CollectedSpan[];
  readonly requests: http.IncomingHttpHeaders[];
  stall: boolean;
  close(): Promise<void>;
}

type OtlpValue = { stringValue?: string; intValue?: string | number; boolValue?: boolean; doubleValue?: number };

function plain(v: OtlpValue): string | number | boolean {
  if (v.stringValue !== undefined) return v.stringValue;
  if (v.intValue !== undefined) return Number(v.intValue);
  if (v.boolValue !== undefined) return v.boolValue;
  return v.doubleValue ?? '';
}

export async function startCollector(): Promise<Collector> {
  const held: http.ServerResponse[] = [];
  const c: Collector = {
    url: '',
    spans: [],
    requests: [],
    stall: false,
    close: async () => {
      for (const r of held) r.destroy();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (d: Buffer) => chunks.push(d));
    req.on('end', () => {
      c.requests.push(req.headers);
      if (c.stall) return void held.push(res);
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
        resourceSpans: { resource: { attributes: { key: string; value: OtlpValue }[] }; scopeSpans: { spans: Record<string, unknown>[] }[] }[];
      };
      for (const rs of body.resourceSpans) {
        const service = String(plain(rs.resource.attributes.find((a) => a.key === 'service.name')?.value ?? {}));
        for (const ss of rs.scopeSpans) {
          for (const s of ss.spans) {
            const attributes: Record<string, string | number | boolean> = {};
            for (const a of s.attributes as { key: string; value: OtlpValue }[]) attributes[a.key] = plain(a.value);
            c.spans.push({
              service,
              traceId: String(s.traceId),
              spanId: String(s.spanId),
              parentSpanId: typeof s.parentSpanId === 'string' ? s.parentSpanId : '',
              name: String(s.name),
              kind: Number(s.kind),
              attributes,
              error: (s.status as { code?: number } | undefined)?.code === 2,
              start: BigInt(String(s.startTimeUnixNano)),
              end: BigInt(String(s.endTimeUnixNano)),
            });
          }
        }
      }
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  (c as { url: string }).url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}/v1/traces`;
  return c;
}
