// Keeps the proxy's certificate current: asks for one as soon as the stream is up, then
// renews at about two thirds of its life (Istio's and Linkerd's point: a day-long
// certificate renews with eight hours left, so a control plane down for hours costs
// nothing), with jitter so a mesh started at once does not renew at once. A failed
// request is retried with jittered exponential backoff, capped so that a certificate
// close to expiry is asked for often. Each request makes a new key: the old key is
// dropped with the old certificate. Timers come from an injected clock, so tests run
// a day in microseconds.
import type { IssuedCertificate } from '../../api/protocol.js';
import { generateKeyPair, makeCsr, privateKeyPem } from '../../security/keys.js';
import type { WorkloadIdentity } from './workload-identity.js';
import type { TimerClock } from '../../api/timer-clock.js';

/** The clock and timers the renewer uses (real ones by default): wall-clock time, as certificates' validity is. */
export type RenewalClock = TimerClock;

export const REAL_CLOCK: RenewalClock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** Where in a certificate's life it is renewed, and the jitter around it (± a fraction of the life). */
export const RENEW_AT = 2 / 3;
export const RENEW_JITTER = 0.05;
const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 5 * 60_000;

export interface CertificateRenewerOptions {
  identity: WorkloadIdentity;
  /** Sends a CSR to the control plane; resolves with the certificate or rejects with why not. */
  request(csr: string): Promise<IssuedCertificate>;
  clock?: RenewalClock;
  /** In [0, 1); tests fix it. */
  random?: () => number;
  /** One line per renewal and per failure (never the key). */
  log?: (line: string) => void;
}

export class CertificateRenewer {
  readonly #o: CertificateRenewerOptions;
  readonly #clock: RenewalClock;
  readonly #random: () => number;
  #timer: unknown;
  #inFlight = false;
  #failures = 0;
  #stopped = false;

  constructor(o: CertificateRenewerOptions) {
    this.#o = o;
    this.#clock = o.clock ?? REAL_CLOCK;
    this.#random = o.random ?? Math.random;
  }

  /** Requests now when there is no certificate yet or it is due (the stream just came up); otherwise keeps the plan. */
  nudge(): void {
    if (this.#stopped || this.#inFlight) return;
    const due = this.#dueAt();
    if (due === undefined || due <= this.#clock.now()) void this.renewNow();
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** One attempt: key, CSR, request; schedules the next renewal or a retry. */
  async renewNow(): Promise<void> {
    if (this.#stopped || this.#inFlight) return;
    this.#inFlight = true;
    this.#cancel();
    try {
      const keys = await generateKeyPair();
      const csr = await makeCsr(keys);
      const certificate = await this.#o.request(csr);
      if (this.#stopped) return;
      this.#o.identity.setCertificate(await privateKeyPem(keys.privateKey), certificate);
      this.#failures = 0;
      const at = this.#dueAt() ?? this.#clock.now();
      this.#o.log?.(
        `identity: certificate for ${certificate.spiffeId} (serial ${certificate.serial}) valid until ${certificate.notAfter}; renewing at ${new Date(at).toISOString()}`,
      );
      this.#schedule(at);
    } catch (err) {
      if (this.#stopped) return;
      const delay = this.#backoff();
      this.#o.log?.(`identity: certificate request failed (${err instanceof Error ? err.message : String(err)}); retrying in ${Math.round(delay / 1000)} s`);
      this.#schedule(this.#clock.now() + delay);
    } finally {
      this.#inFlight = false;
    }
  }

  /** When the certificate in hand is due for renewal (undefined: none in hand). */
  #dueAt(): number | undefined {
    const { notBefore, notAfter } = this.#o.identity;
    if (notBefore === undefined || notAfter === undefined) return undefined;
    const life = notAfter - notBefore;
    return notBefore + life * (RENEW_AT + (this.#random() * 2 - 1) * RENEW_JITTER);
  }

  #backoff(): number {
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.#failures++);
    // Never wait past a tenth of what is left of the certificate in hand (but at least the minimum).
    const left = (this.#o.identity.notAfter ?? Number.POSITIVE_INFINITY) - this.#clock.now();
    const cap = Math.max(BACKOFF_MIN_MS, left / 10);
    return Math.min(base, cap) * (0.5 + this.#random() / 2);
  }

  #schedule(at: number): void {
    this.#cancel();
    this.#o.identity.renewAt = at;
    this.#timer = this.#clock.setTimeout(
      () => {
        this.#timer = undefined;
        void this.renewNow();
      },
      Math.max(0, at - this.#clock.now()),
    );
  }

  #cancel(): void {
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
