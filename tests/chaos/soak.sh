#!/usr/bin/env bash
# soak.sh BUILD — `make soak`: the fault-injection scenarios of tests/chaos/ with bigger N and
# longer faults (CHAOS_SOAK=1: 256 load clients for 30 s, backends killed for 20 s, vacuum
# pinned for a minute, several kills and restarts). Runs through tests/run.sh (its own
# throwaway PostgreSQL), one scenario at a time, with a longer per-test timeout.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
export CHAOS_SOAK=1 JOBQ_TEST_FILTER=chaos JOBQ_TEST_TIMEOUT=${JOBQ_TEST_TIMEOUT:-1200}
exec "$root/tests/run.sh" "${1:-build}"
