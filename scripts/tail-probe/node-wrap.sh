#!/bin/bash
# probe.mjs starts proxies through this: it replaces --max-semi-space-size=1 with $TAIL_SEMI when set; adds $TAIL_EXTRA.
args=()
for a in "$@"; do
  if [[ -n "$TAIL_SEMI" && "$a" == --max-semi-space-size=* ]]; then args+=("--max-semi-space-size=$TAIL_SEMI"); else args+=("$a"); fi
done
exec /usr/bin/env node $TAIL_EXTRA "${args[@]}"
