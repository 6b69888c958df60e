// Which security kinds keep proxies out, and what `trellis check` says of each
// (src/control/sources/kubernetes-unlisted.ts): only the security kinds, only until they
// list; 403 is RBAC, 404 a missing CRD, anything else the API's own words.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { describeUnlisted, unlistedSecurityKinds } from '../../src/control/sources/kubernetes-unlisted.js';

describe('unlisted security kinds', () => {
  it('names the security kinds never listed, in a fixed order, with the likely cause', () => {
    const unlisted = unlistedSecurityKinds([
      { kind: 'RateLimitPolicy', synced: false, lastFailure: { statusCode: 404, message: 'x' } },
      { kind: 'PeerAuthentication', synced: false, lastFailure: { statusCode: 404, message: '404 from /apis/trellis.dev/v1alpha1/peerauthentications' } },
      { kind: 'AuthorizationPolicy', synced: false, lastFailure: { statusCode: 403, message: 'forbidden' } },
      { kind: 'RequestAuthentication', synced: true },
    ]);
    assert.deepEqual(
      unlisted.map((u) => [u.kind, u.cause]),
      [
        ['AuthorizationPolicy', 'rbac'],
        ['PeerAuthentication', 'crd-missing'],
      ],
    );
    assert.match(describeUnlisted(unlisted[0]!), /^AuthorizationPolicy cannot be listed: 403 Forbidden, RBAC: .* authorizationpolicies\.trellis\.dev/);
    assert.match(
      describeUnlisted(unlisted[1]!),
      /^PeerAuthentication cannot be listed: 404 Not Found, its CRD peerauthentications\.trellis\.dev is not installed/,
    );
  });

  it('an API error is told in its words; a kind with no answer yet is pending', () => {
    const [error, pending] = unlistedSecurityKinds([
      { kind: 'AuthorizationPolicy', synced: false, lastFailure: { statusCode: 500, message: '500 from /apis/...: etcdserver: request timed out' } },
      { kind: 'PeerAuthentication', synced: false },
    ]);
    assert.equal(error!.cause, 'error');
    assert.match(describeUnlisted(error!), /etcdserver: request timed out/);
    assert.equal(pending!.cause, 'pending');
    assert.equal(describeUnlisted(pending!), 'PeerAuthentication has not been listed yet');
  });
});
