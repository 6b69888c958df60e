// jose, loaded the first time a proxy has a JWT rule rather than when it starts: it costs
// a process about 10 MB of resident memory (issue 13's sidecar budget is 60 MB), and most
// proxies have no RequestAuthentication at all. A JwtAuthenticator starts the load when it
// is made (from a snapshot with JWT rules), so it is in hand before the first token comes;
// test/proxy/sidecar-import-graph.test.ts fails when a static import of jose comes back.
import type * as Jose from 'jose';

let loaded: typeof Jose | undefined;
let loading: Promise<typeof Jose> | undefined;

/** jose when it is loaded; undefined before (then {@link loadJose}). */
export function joseNow(): typeof Jose | undefined {
  return loaded;
}

/** Loads jose once; every call after the first returns the same promise. */
export function loadJose(): Promise<typeof Jose> {
  loading ??= import('jose').then((m) => {
    loaded = m;
    return m;
  });
  return loading;
}
