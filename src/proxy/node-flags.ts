// The Node.js flags every proxy process is started with (by `trellis up` and the bench;
// anyone starting `trellis proxy` by hand can pass them too, e.g. in NODE_OPTIONS).
//
// A proxy's allocations die young (request heads, chunks, closures per exchange), so a
// small young generation costs little: scavenges get more frequent but each has almost
// nothing to copy. With V8's default (semi-spaces growing to 16 MB each) a sidecar under
// load sat at 61-64 MB resident; with 1 MB it sat at 55-58 MB, against a 60 MB budget,
// and max throughput in `npm run bench` did not move beyond the machine's noise
// (measured 2026-11-23, 2-core machine).
export const PROXY_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1'];
