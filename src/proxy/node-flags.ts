// The Node.js flags every proxy process is started with (by `trellis up` and the bench;
// anyone starting `trellis proxy` by hand can pass them too, e.g. in NODE_OPTIONS).
//
// --max-semi-space-size=1: a proxy's allocations die young (request heads, chunks,
// closures per exchange), so a small young generation costs little: scavenges get more
// frequent but each has almost nothing to copy. With V8's default (semi-spaces growing
// to 16 MB each) a sidecar under load sat at 61-64 MB resident; with 1 MB at 55-58 MB,
// against a 60 MB budget, and max throughput did not move beyond the machine's noise.
//
// --v8-pool-size=1: one V8 helper thread instead of four (background compilation and
// GC tasks). Each helper that allocates gets its own malloc arena, and those arenas were
// 2.9-3.7 MB of a loaded sidecar's memory; with one helper, 4 rounds of max-rate load
// left it at 55-56 MB instead of 58. A sidecar is one thread on a machine shared with
// its app: max throughput was the same (0.748 vs 0.744 of the nginx pair, 6 rounds).
//
// (measured 2026-11-23, 2-core machine)
export const PROXY_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1', '--v8-pool-size=1'];
