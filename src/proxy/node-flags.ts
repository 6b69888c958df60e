// The Node.js flags every proxy process is started with (by `trellis up` and the bench;
// anyone starting `trellis proxy` by hand can pass them too, e.g. in NODE_OPTIONS).
//
// --max-semi-space-size=1: a proxy's allocations die young (request heads, chunks,
// closures per exchange), so a small young generation costs little: scavenges get more
// frequent but each has almost nothing to copy. With V8's default (semi-spaces growing
// to 16 MB each) a sidecar under load sat at 61-64 MB resident; with 1 MB at 55-58 MB,
// against a 60 MB budget, and max throughput did not move beyond the machine's noise.
//
// A larger young generation would mean fewer scavenges, each a pause of the proxy's one
// thread that the requests arriving meanwhile wait out (issue 13's added p99). Measured
// with scripts/tail-probe on an mTLS pair at 1,000 rps (2026-12-06, load 7, 3 interleaved
// rounds; outbound / inbound, per 1,000 requests): fixed 1 MB (this) 3.9-4.1 / 2.9-3.3
// scavenges, 1.4-2.6 / 0.6-2.0 of them over 0.5 ms, RSS 63-65 MB; fixed 2 MB
// (--min-semi-space-size=2 too; raising only the max left it at 1 MB, since V8 grows it
// only when much survives) 1.9-2.3 / 1.4-1.6, 1.3-1.9 / 0.8-1.6 over 0.5 ms, RSS +1-4 MB;
// fixed 4 MB 0.9-1.0 / 0.75, 0.6-0.9 / 0.6-0.8 over 0.5 ms, RSS +5-6 MB. Both larger
// sizes also cost CPU per request (outbound 141-149 µs at 1 MB, 165-184 at 2 MB, 159-166
// at 4 MB: a young generation that no longer stays in cache), so it stays at 1 MB until
// a quiet-machine run shows the p99 gain is worth the memory and the CPU.
//
// --v8-pool-size=1: one V8 helper thread instead of four (background compilation and
// GC tasks). Each helper that allocates gets its own malloc arena, and those arenas were
// 2.9-3.7 MB of a loaded sidecar's memory; with one helper, 4 rounds of max-rate load
// left it at 55-56 MB instead of 58. A sidecar is one thread on a machine shared with
// its app: max throughput was the same (0.748 vs 0.744 of the nginx pair, 6 rounds).
//
// (measured 2026-11-23, 2-core machine)
export const PROXY_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=1', '--v8-pool-size=1'];
