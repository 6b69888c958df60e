// The shape of a conformance case: one upstream mesh test (kubernetes-sigs/gateway-api
// conformance/tests/mesh/<file>.go, ShortName) as a Trellis mesh, the routes its
// manifest applies, and the requests it sends with what each must get back.
import type { MeshId } from './meshes.js';

/** What a request must get back (upstream's ExpectedResponse, as the mesh suite checks it, plus its intent). */
export interface Expect {
  /** Response status (default 200; a gRPC call's OK is 200, as upstream maps it). */
  readonly status?: number;
  /** The answering pod's name starts with this (upstream `Backend`). */
  readonly backend?: string;
  /** The path the echo received (upstream `ExpectedRequest.Path`). */
  readonly path?: string;
  /** Headers the echo received: all values of the name joined with "," (as upstream compares). */
  readonly requestHeaders?: Readonly<Record<string, string>>;
  readonly absentRequestHeaders?: readonly string[];
  /** Response headers (exact value). */
  readonly responseHeaders?: Readonly<Record<string, string>>;
  readonly absentResponseHeaders?: readonly string[];
  /**
   * The redirect's Location (upstream `RedirectRequest`). Unset fields default as
   * upstream's checker defaults them: scheme the request's (http), host the request's,
   * path the request's, port absent or the scheme's default.
   */
  readonly redirect?: { readonly scheme?: string; readonly host?: string; readonly port?: string; readonly path?: string };
}

/** Where the client sends: its sidecar's HTTP proxy listener (default), or its listener for one upstream (that Service's "cluster IP"). */
export type Via = { readonly listener: 'http-proxy' } | { readonly listener: 'upstream'; readonly service: string };

export interface RequestCheck {
  readonly kind: 'request';
  /** Upstream's test case name (or its generated one). */
  readonly name: string;
  readonly protocol?: 'http' | 'grpc';
  /** Host header (`:authority` for gRPC); `{ podOf }`: that instance's app address, the pod IP. */
  readonly host: string | { readonly podOf: string };
  readonly path?: string;
  readonly method?: string;
  readonly headers?: Readonly<Record<string, string>>;
  /** Which of the mesh's clients sends (default `default`). */
  readonly from?: string;
  readonly via?: Via;
  readonly expect: Expect;
}

/** Upstream's weighted-distribution check: share of answers per backend pod prefix, each within ±5 points. */
export interface WeightCheck {
  readonly kind: 'weights';
  readonly name: string;
  readonly protocol: 'http' | 'grpc';
  readonly host: string;
  readonly weights: Readonly<Record<string, number>>;
}

export type Check = RequestCheck | WeightCheck;

/** `pass`: runs and must pass. `todo`: runs, and a failure is reported but not counted, with the reason it fails on main. */
export type CaseStatus = { readonly status: 'pass' } | { readonly status: 'todo'; readonly reason: string };

export interface ConformanceCase {
  /** Upstream ShortName. */
  readonly name: string;
  readonly kind: 'HTTP' | 'GRPC';
  /** Upstream test file under conformance/tests/mesh/. */
  readonly upstream: string;
  readonly mesh: MeshId;
  /** The case's manifests as Trellis route files (YAML; '' for none). */
  readonly routes: string;
  /** Where the translation departs from upstream's YAML or checks, and why. */
  readonly deviations?: readonly string[];
  readonly checks: readonly Check[];
  readonly outcome: CaseStatus;
}
