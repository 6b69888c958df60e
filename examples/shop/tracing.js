// OpenTelemetry for the shop's services: the SDK's tracer provider, exporting OTLP/HTTP
// (JSON) in batches to where the mesh says (`trellis up` sets
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: the control plane's receiver, or the mesh's
// collector), with W3C trace context in and out. Spans are made by hand here rather than
// by the auto-instrumentations, which need a loader hook for ES modules.
//
// The app keeps its sidecars' sampling decision (the SDK's default sampler follows its
// parent), so app spans and sidecar spans make one trace: a request's server span is a
// child of the inbound sidecar's span, and a call out carries the app's client span to
// its outbound sidecar. Without the variable, tracing is off and every helper just runs.
import { context, propagation, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { NodeTracerProvider } from '@opentelemetry/sdk-trace-node';

const endpoint = process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
let provider;

/** Starts tracing for `service` when the mesh gives an endpoint; returns the tracer. */
export function startTracing(service) {
  if (endpoint && !provider) {
    provider = new NodeTracerProvider({
      resource: resourceFromAttributes({
        'service.name': process.env.OTEL_SERVICE_NAME || service,
        'service.version': process.env.TRELLIS_VERSION || 'default',
        'service.instance.id': process.env.TRELLIS_INSTANCE || String(process.pid),
      }),
      // Half a second between batches, so a trace shows up soon after its request.
      spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: endpoint }), { scheduledDelayMillis: 500 })],
    });
    // Registers the W3C propagator and the async-context manager (AsyncLocalStorage).
    provider.register();
  }
  return trace.getTracer(`shop-${service}`);
}

/** Sends what is queued and stops (call on shutdown). */
export async function stopTracing() {
  await provider?.shutdown().catch(() => {});
}

/**
 * Wraps an HTTP request handler in a server span, a child of the caller's context (the
 * inbound sidecar's span); the handler runs inside it, so spans it starts are children.
 */
export function serverSpans(tracer, handler) {
  return (req, res) => {
    const parent = propagation.extract(context.active(), req.headers);
    const path = (req.url || '/').split('?')[0];
    const span = tracer.startSpan(
      `${req.method} ${path}`,
      { kind: SpanKind.SERVER, attributes: { 'http.request.method': req.method, 'url.path': path } },
      parent,
    );
    res.once('close', () => {
      span.setAttribute('http.response.status_code', res.statusCode);
      if (res.statusCode >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      span.end();
    });
    context.with(trace.setSpan(parent, span), () => handler(req, res));
  };
}

/**
 * A client span for a call out, started now in the active context; `headers` gets its
 * traceparent (replacing one copied from the incoming request). Call `end(status)` when done.
 */
export function clientSpan(tracer, name, headers, attributes = {}) {
  const span = tracer.startSpan(name, { kind: SpanKind.CLIENT, attributes });
  delete headers.traceparent;
  delete headers.tracestate;
  propagation.inject(trace.setSpan(context.active(), span), headers);
  return {
    end(status) {
      if (status !== undefined) span.setAttribute('http.response.status_code', status);
      if (status === undefined || status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
      span.end();
    },
  };
}

/** Runs `fn` (a promise) in a client span named `name`; the span records a thrown error. */
export async function withSpan(tracer, name, attributes, fn) {
  return tracer.startActiveSpan(name, { kind: SpanKind.CLIENT, attributes }, async (span) => {
    try {
      return await fn();
    } catch (error) {
      span.recordException(error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: String(error?.message ?? error) });
      throw error;
    } finally {
      span.end();
    }
  });
}
