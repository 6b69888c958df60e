// Prometheus metrics of one proxy: golden metrics per source, destination, route and
// status for HTTP, connections and bytes for TCP, and the process's own CPU and memory.
// The hot path never builds label objects: each (labels) combination is looked up once
// and its bound children are kept.
import client from 'prom-client';

export type Direction = 'inbound' | 'outbound';

/** Latency buckets in seconds: fine-grained below 10 ms, where a proxy's own cost lives. */
const LATENCY_BUCKETS = [0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

interface HttpSeries {
  readonly requests: client.Counter.Internal;
  readonly latency: client.Histogram.Internal<string>;
}

/** The labels of one request, known before its status. */
export interface HttpLabels {
  readonly direction: Direction;
  readonly source: string;
  readonly destination: string;
  readonly destinationVersion: string;
  readonly route: string;
}

export class ProxyMetrics {
  readonly registry = new client.Registry();
  readonly #requests: client.Counter<string>;
  readonly #latency: client.Histogram<string>;
  readonly #tcpConnections: client.Counter<string>;
  readonly #tcpActive: client.Gauge<string>;
  readonly #tcpBytes: client.Counter<string>;
  readonly configVersion: client.Gauge<string>;
  readonly controlConnected: client.Gauge<string>;
  readonly #http = new Map<string, HttpSeries>();

  constructor(proxy: { service: string; id: string }) {
    this.registry.setDefaultLabels({ proxy_service: proxy.service, proxy_id: proxy.id });
    client.collectDefaultMetrics({ register: this.registry, prefix: 'trellis_proxy_' });
    const httpLabels = ['direction', 'source', 'destination', 'destination_version', 'route', 'status'];
    this.#requests = new client.Counter({
      name: 'trellis_http_requests_total', help: 'HTTP requests handled, by direction, source, destination, route and response status.',
      labelNames: httpLabels, registers: [this.registry],
    });
    this.#latency = new client.Histogram({
      name: 'trellis_http_request_duration_seconds', help: 'Time from the request head arriving to the response being fully sent.',
      labelNames: httpLabels, buckets: LATENCY_BUCKETS, registers: [this.registry],
    });
    const tcpLabels = ['direction', 'source', 'destination'];
    this.#tcpConnections = new client.Counter({
      name: 'trellis_tcp_connections_total', help: 'TCP connections proxied.', labelNames: tcpLabels, registers: [this.registry],
    });
    this.#tcpActive = new client.Gauge({
      name: 'trellis_tcp_connections_active', help: 'TCP connections open now.', labelNames: tcpLabels, registers: [this.registry],
    });
    this.#tcpBytes = new client.Counter({
      name: 'trellis_tcp_bytes_total', help: 'Bytes proxied over TCP; flow is "sent" (towards the destination) or "received".',
      labelNames: [...tcpLabels, 'flow'], registers: [this.registry],
    });
    this.configVersion = new client.Gauge({
      name: 'trellis_proxy_config_version', help: 'Version of the snapshot in force (0 before the first).', registers: [this.registry],
    });
    this.controlConnected = new client.Gauge({
      name: 'trellis_proxy_control_connected', help: '1 while the proxy is connected to the control plane.', registers: [this.registry],
    });
  }

  /** Records one finished HTTP exchange. */
  observeHttp(l: HttpLabels, status: number, seconds: number): void {
    const key = `${l.direction}\0${l.source}\0${l.destination}\0${l.destinationVersion}\0${l.route}\0${status}`;
    let s = this.#http.get(key);
    if (s === undefined) {
      const labels = [l.direction, l.source, l.destination, l.destinationVersion, l.route, String(status)];
      s = { requests: this.#requests.labels(...labels), latency: this.#latency.labels(...labels) };
      this.#http.set(key, s);
    }
    s.requests.inc();
    s.latency.observe(seconds);
  }

  tcpOpened(direction: Direction, source: string, destination: string): void {
    this.#tcpConnections.labels(direction, source, destination).inc();
    this.#tcpActive.labels(direction, source, destination).inc();
  }

  tcpClosed(direction: Direction, source: string, destination: string, sent: number, received: number): void {
    this.#tcpActive.labels(direction, source, destination).dec();
    this.#tcpBytes.labels(direction, source, destination, 'sent').inc(sent);
    this.#tcpBytes.labels(direction, source, destination, 'received').inc(received);
  }
}
