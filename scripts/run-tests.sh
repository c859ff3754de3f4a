#!/usr/bin/env bash
# Runs every mocha suite, files in parallel (suites are isolated: port 0, temp dirs, unique
# names), and ends with one plain summary line: "tests: N passed, N failed, N skipped".
set -uo pipefail
cd "$(dirname "$0")/.."
mkdir -p .tmp
out=.tmp/test-output.log
npx mocha --parallel --jobs "${TEST_JOBS:-3}" "$@" \
  '{lib,emulators,provider,cell-agent,image-cache,usage-reporter,test}/**/*.test.ts' 2>&1 | tee "$out"
rc=${PIPESTATUS[0]}
count() { grep -oE "^ +[0-9]+ $1" "$out" | tail -1 | grep -oE '[0-9]+' || echo 0; }
echo "tests: $(count passing) passed, $(count failing) failed, $(count pending) skipped"
exit "$rc"
