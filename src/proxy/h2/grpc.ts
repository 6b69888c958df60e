// gRPC over the proxy's HTTP/2 path: how a Trellis error is told to a gRPC client, and
// which outcomes count as failures. gRPC calls answer HTTP 200 and carry their outcome
// in the `grpc-status` trailer, so an HTTP status alone would call every error a success.
import { ERRORS, errorHeaders, errorMessage, type ErrorCode } from '../../errors.js';

/** gRPC status codes the proxy itself answers with (grpc/doc/statuscodes.md). */
export const GRPC_STATUS = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  DEADLINE_EXCEEDED: 4,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  UNAUTHENTICATED: 16,
} as const;

/** A request is gRPC when its content type is `application/grpc` or `application/grpc+<codec>`. */
export function isGrpcContentType(ct: string | undefined): boolean {
  return ct?.startsWith('application/grpc') === true && (ct.length === 16 || ct.charCodeAt(16) === 43 /* + */ || ct.charCodeAt(16) === 59) /* ; */;
}

/**
 * The gRPC status for a Trellis error, from its HTTP status as gRPC's own
 * HTTP-to-gRPC mapping does (doc/http-grpc-status-mapping.md: 404 → UNIMPLEMENTED,
 * 502/503 → UNAVAILABLE), except that a timeout is DEADLINE_EXCEEDED, an app that
 * cannot speak gRPC's HTTP/2 at all is UNIMPLEMENTED (UNAVAILABLE would have the
 * client retry what can never work), a 401 (a refused JWT) is UNAUTHENTICATED, and
 * anything else the proxy refuses (400, 431, 500) is INTERNAL. A 403 (an
 * AuthorizationPolicy's refusal, an upgrade or address the mesh refuses) is
 * PERMISSION_DENIED, as gRPC's mapping has it: the caller may not, and trying again
 * will not change that.
 */
export function grpcStatusOf(code: ErrorCode): number {
  if (code === 'TRELLIS_E_TIMEOUT' || code === 'TRELLIS_E_REQUEST_TIMEOUT') return GRPC_STATUS.DEADLINE_EXCEEDED;
  if (code === 'TRELLIS_E_APP_PROTOCOL') return GRPC_STATUS.UNIMPLEMENTED;
  // A rate limit is the caller's quota spent, not the server down (gRPC's own status for it).
  if (code === 'TRELLIS_E_RATE_LIMITED') return GRPC_STATUS.RESOURCE_EXHAUSTED;
  switch (ERRORS[code].status as number) {
    case 401:
      return GRPC_STATUS.UNAUTHENTICATED;
    case 403:
      return GRPC_STATUS.PERMISSION_DENIED;
    case 404:
      return GRPC_STATUS.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return GRPC_STATUS.UNAVAILABLE;
    default:
      return GRPC_STATUS.INTERNAL;
  }
}

/**
 * The HTTP status a gRPC error stands for (gRPC's HTTP-to-status mapping, read
 * backwards), so a route's retry `codes` decide on gRPC calls too: UNAVAILABLE is 503,
 * RESOURCE_EXHAUSTED 429, DEADLINE_EXCEEDED 504, UNIMPLEMENTED 501, INTERNAL and
 * UNKNOWN 500; other statuses (and OK) stand for none.
 */
export function httpStatusOfGrpc(status: number): number | undefined {
  switch (status) {
    case 14:
      return 503;
    case 8:
      return 429;
    case 4:
      return 504;
    case 12:
      return 501;
    case 13:
    case 2:
      return 500;
    default:
      return undefined;
  }
}

/** The trailers-only response for a Trellis error on a gRPC call (plus `trellis-error`). */
export function grpcErrorHeaders(code: ErrorCode, params: Record<string, unknown>, grpcStatus?: number): Record<string, string | number> {
  return withErrorHeaders(
    {
      ':status': 200,
      'content-type': 'application/grpc',
      'grpc-status': String(grpcStatus ?? grpcStatusOf(code)),
      'grpc-message': percentEncode(`${code}: ${errorMessage(code, params)}`),
      'trellis-error': ERRORS[code].token,
    },
    code,
    params,
  );
}

/** `headers` with the error table's extra fields of `code` (a 401's WWW-Authenticate) added. */
export function withErrorHeaders<H extends Record<string, string | number>>(headers: H, code: ErrorCode, params: Record<string, unknown>): H {
  const extra = errorHeaders(code, params);
  if (extra !== undefined) for (const [name, value] of extra) (headers as Record<string, string | number>)[name] = value;
  return headers;
}

/** grpc-message is percent-encoded: anything outside printable ASCII, and `%` itself. */
function percentEncode(s: string): string {
  let out = '';
  for (const byte of Buffer.from(s, 'utf8')) {
    out += byte >= 0x20 && byte <= 0x7e && byte !== 0x25 ? String.fromCharCode(byte) : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}
