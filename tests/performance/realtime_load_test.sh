#!/usr/bin/env bash
# Every transport at once: --concurrent readers split evenly over WebSocket, SSE, long-polling
# and polling, updates published for --duration, about 1 % of the connections dropped every
# 2 s and resumed from their cursor.
#
#   JOBWIRE_SECRET=... ./tests/performance/realtime_load_test.sh --concurrent=500 --duration=300s
#
# The run and the verdicts are lib/realtime.js's (the criteria are in lib/criteria.js, shared
# with the other scripts); it ends with PASS/FAIL lines, exit status 0 only if all are PASS.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if ! command -v node >/dev/null; then
  echo "realtime_load_test.sh: error: node (20 or later) is needed" >&2
  exit 2
fi
exec node "$here/lib/realtime.js" "$@"
