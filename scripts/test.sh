#!/usr/bin/env bash
# The project's test command (`npm test`): installs the servers the tests need, type-checks,
# runs vitest, and ends with one line `tests: N passed, N failed` counted from vitest's JSON report.
# Extra arguments go to vitest (e.g. `npm test -- test/harness`).
set -uo pipefail
cd "$(dirname "$0")/.."

failed_extra=0 # failures outside vitest's own counts (install, tsc, vitest crash)
summary() {
  local passed=0 failed=0 counts
  if [ -s "$report" ]; then
    # Failed files that never got to run tests (import/compile errors) count once each;
    # vitest's own error count covers unhandled errors that would otherwise pass silently.
    if counts=$(node -e '
      const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
      let failed = r.numFailedTests || 0;
      for (const f of r.testResults || []) {
        const failedInFile = (f.assertionResults || []).filter((a) => a.status === "failed").length;
        if (f.status === "failed" && failedInFile === 0) failed++;
      }
      console.log(`${r.numPassedTests || 0} ${failed}`);
    ' "$report" 2>/dev/null); then
      read -r passed failed <<<"$counts"
    else
      echo "test.sh: could not read $report" >&2
      failed_extra=$((failed_extra + 1))
    fi
  fi
  failed=$((failed + failed_extra))
  echo "tests: ${passed} passed, ${failed} failed"
  [ "$failed" -eq 0 ]
}

mkdir -p .tmp
report=.tmp/vitest-report.json
rm -f "$report"

if ! bash scripts/install-deps.sh; then
  echo "test.sh: scripts/install-deps.sh failed" >&2
  failed_extra=$((failed_extra + 1))
fi

if [ ! -d node_modules ]; then
  if ! npm ci --no-audit --no-fund; then
    echo "test.sh: npm ci failed" >&2
    failed_extra=$((failed_extra + 1))
    summary
    exit 1
  fi
fi

echo "test.sh: tsc --noEmit"
if ! npx --no-install tsc --noEmit; then
  echo "test.sh: type check failed" >&2
  failed_extra=$((failed_extra + 1))
fi

npx --no-install vitest run --reporter=default --reporter=json --outputFile.json="$report" "$@"
vitest_rc=$?

if [ "$vitest_rc" -ne 0 ]; then
  if [ ! -s "$report" ]; then
    echo "test.sh: vitest exited $vitest_rc without a report" >&2
    failed_extra=$((failed_extra + 1))
  elif node -e '
      const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
      const fileFails = (r.testResults || []).filter((f) => f.status === "failed").length;
      process.exit((r.numFailedTests || 0) + fileFails > 0 ? 1 : 0);
    ' "$report" 2>/dev/null; then
    # Non-zero exit but no failed test or file in the report: unhandled errors, or no test files.
    echo "test.sh: vitest exited $vitest_rc with no failed test in its report (unhandled errors?)" >&2
    failed_extra=$((failed_extra + 1))
  fi
fi

summary
