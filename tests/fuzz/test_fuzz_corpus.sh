#!/usr/bin/env bash
# Replays the committed fuzz corpus through the fuzz target (built with gcc, and with ASan/UBSan
# in make check-asan): every input that ever mattered stays a regression test.
set -euo pipefail
root=${JOBQ_TEST_ROOT:?run through tests/run.sh}
"${JOBQ_TEST_BUILD:?}/tests/fuzz/fuzz_rpc_replay" "$root/tests/fuzz/corpus"
