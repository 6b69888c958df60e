// JSON with object keys sorted, so equal values always give equal strings. Every stage
// compares config or snapshots this way (the last good config, snapshot versions, the
// weights API's wait for the new split), so it lives beside the model, not in one stage.

/** JSON with object keys sorted, so equal values always give equal strings. */
export function stableStringify(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) => {
    if (v === null || typeof v !== 'object' || Array.isArray(v)) return v;
    const sorted: Record<string, unknown> = {};
    for (const k of Object.keys(v).sort()) sorted[k] = (v as Record<string, unknown>)[k];
    return sorted;
  });
}
