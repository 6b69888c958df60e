// `trellis webhook`: the sidecar injection webhook (src/k8s/webhook.ts) as a server, run
// as the second container of the trellis-control Deployment (deploy/kubernetes/).
import { TrellisError } from '../errors.js';
import { DEFAULT_INJECT_OPTIONS } from '../k8s/inject.js';
import { createInjectionWebhook, DEFAULT_MAX_BODY_BYTES, INJECT_PATH, KeyPairFiles } from '../k8s/webhook.js';
import { parseBytes, parseFlags, parseHostPort } from './args.js';

/** Usage text of `trellis webhook`. */
export const help = `Usage: trellis webhook --listen HOST:PORT --tls-cert FILE --tls-key FILE [options]

Serves the mutating admission webhook that injects Trellis's sidecar into pods:
AdmissionReview v1 at POST ${INJECT_PATH}, answered with a JSON Patch. Pods are never
refused (the MutatingWebhookConfiguration sets failurePolicy Ignore).

Options:
  --listen HOST:PORT     where to listen (default: 0.0.0.0:9443)
  --tls-cert FILE        the serving certificate (PEM), for the Service's DNS name
  --tls-key FILE         its key (PEM). The files are read again when they change, and
                         may appear after the start (the control plane's leader writes
                         them into Secret trellis-webhook-tls from the mesh CA): until
                         then TLS handshakes are refused
  --image IMAGE          the proxy image injected (default: ${DEFAULT_INJECT_OPTIONS.image})
  --control URL          the control plane URL sidecars join (default: ${DEFAULT_INJECT_OPTIONS.controlUrl})
  --max-body-bytes N     largest review read (default: 4MiB)

Example:
  trellis webhook --listen 0.0.0.0:9443 --tls-cert /certs/tls.crt --tls-key /certs/tls.key
`;

/** Runs the command until SIGINT or SIGTERM; returns the exit code. */
export async function run(argv: string[]): Promise<number> {
  const { values } = parseFlags(
    argv,
    {
      listen: { type: 'string', default: '0.0.0.0:9443' },
      'tls-cert': { type: 'string' },
      'tls-key': { type: 'string' },
      image: { type: 'string' },
      control: { type: 'string' },
      'max-body-bytes': { type: 'string' },
    },
    false,
    'webhook',
  );
  if (!values['tls-cert'] || !values['tls-key']) {
    throw new TrellisError('TRELLIS_E_USAGE', { reason: 'the apiserver calls webhooks over HTTPS only: give --tls-cert and --tls-key' });
  }
  const listen = parseHostPort(values.listen, '--listen');
  const server = createInjectionWebhook({
    maxBodyBytes: values['max-body-bytes'] ? parseBytes(values['max-body-bytes'], '--max-body-bytes') : DEFAULT_MAX_BODY_BYTES,
    inject: { ...(values.image ? { image: values.image } : {}), ...(values.control ? { controlUrl: values.control } : {}) },
  });
  const pair = new KeyPairFiles({
    server,
    certFile: values['tls-cert'],
    keyFile: values['tls-key'],
    log: (line) => void process.stderr.write(`${line}\n`),
  });
  await pair.load();
  pair.start();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(listen.port, listen.host, resolve);
  });
  const a = server.address();
  process.stdout.write(`webhook: https://${typeof a === 'object' && a ? `${a.address}:${a.port}` : values.listen}${INJECT_PATH}\n`);
  await new Promise<void>((resolve) => {
    const stop = () => {
      pair.stop();
      server.close(() => resolve());
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  return 0;
}
