#!/usr/bin/env bash
# Run the official MCP conformance suite (server side) against a running server.
#
#   scripts/conformance.sh URL 2025-11-25|2026-07-28 [extra conformance args...]
#
# Examples:
#   scripts/conformance.sh http://127.0.0.1:3001/mcp 2025-11-25
#   scripts/conformance.sh http://127.0.0.1:3001/mcp 2026-07-28
#   scripts/conformance.sh http://127.0.0.1:3001/mcp 2026-07-28 --scenario tools-list
#   scripts/conformance.sh http://127.0.0.1:3001/mcp 2026-07-28 --timeout 60000
#
# Modes:
#   * default: `conformance server --requirements REV` runs every server scenario the
#     revision requires (scored) plus the ones it runs "for visibility" (not scored).
#     Exit status is non-zero iff a SCORED scenario has a FAILURE check (or produced no
#     result at all). Not-scored failures are reported but never fail the run.
#   * `--scenario NAME` in the extra args: runs that one scenario at REV's wire
#     (`--spec-version REV --force`, since --requirements cannot be combined with
#     --scenario). Exit status is non-zero on ANY failing check of that scenario,
#     scored or not (it is a development loop).
#   * `--expected-failures FILE` (YAML baseline, see the suite README) is passed
#     through and then the HARNESS exit code is the verdict (baselined failures pass,
#     stale baseline entries fail).
#
# The suite needs Node >= 22; scripts/node-sdk installs Node 22 and the suite from the npm
# registry into .cache/conformance/ (gitignored) on first use; they are reused afterwards.
# Result files (one checks.json per scenario + the full harness log) go to
# .cache/conformance/results/<REV>-<UTC timestamp>/ unless CONFORMANCE_RESULTS_DIR is set.
#
# Environment:
#   CONFORMANCE_RESULTS_DIR   where to write results (default: see above)
#   CONFORMANCE_WAIT          seconds to wait for the server to answer HTTP (default 15)
#   CONFORMANCE_KEEP_RUNS     how many old result dirs to keep in the cache (default 20)
#
# The last line printed is `scored: N passed, M failed` (scenario counts; in --scenario
# mode: `scenario: 1 passed, 0 failed` or `scenario: 0 passed, 1 failed`).
set -euo pipefail

# Node 22, the suite and the TypeScript SDK it uses are pinned and installed by scripts/node-sdk.
CONFORMANCE_VERSION="$(sed -n 's/^CONFORMANCE_VERSION="\(.*\)"$/\1/p' "$(dirname "${BASH_SOURCE[0]}")/node-sdk")"

usage() {
  sed -n '2,36p' "$0" | sed 's/^# \{0,1\}//'
}

if [[ $# -ge 1 && ( "$1" == "-h" || "$1" == "--help" ) ]]; then
  usage
  exit 0
fi
if [[ $# -lt 2 ]]; then
  usage >&2
  exit 2
fi

URL="$1"
REQ="$2"
shift 2
case "$REQ" in
  2025-11-25|2026-07-28) ;;
  *) echo "conformance.sh: requirement set must be 2025-11-25 or 2026-07-28, got '$REQ'" >&2; exit 2 ;;
esac

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$SCRIPT_DIR/.." && pwd)"
CACHE="$REPO_ROOT/.cache/conformance"
# Installs on first use; prints the node binary, then the node_modules directory.
NODE_SDK="$("$SCRIPT_DIR/node-sdk")" || exit 2
NODE="${NODE_SDK%%$'\n'*}"
NODE_BIN_DIR="$(dirname "$NODE")"
PKG_DIR="$CACHE/node_modules/@modelcontextprotocol/conformance"
CLI="$PKG_DIR/dist/index.js"
export PATH="$NODE_BIN_DIR:$PATH"

# ------------------------------------------------------------------- mode ---
SCENARIO=""
BASELINE=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[$i]}" in
    --scenario) SCENARIO="${args[$((i + 1))]:-}" ;;
    --scenario=*) SCENARIO="${args[$i]#--scenario=}" ;;
    --expected-failures|--expected-failures=*) BASELINE=1 ;;
    --requirements|--requirements=*|--suite|--suite=*|--spec-version|--spec-version=*|-o|--output-dir|--output-dir=*)
      echo "conformance.sh: do not pass ${args[$i]}; the script sets it (see --help)" >&2
      exit 2 ;;
  esac
done

STAMP="$(date -u +%Y%m%dT%H%M%SZ)"
if [[ -n "${CONFORMANCE_RESULTS_DIR:-}" ]]; then
  RESULTS="$CONFORMANCE_RESULTS_DIR"
else
  RESULTS="$CACHE/results/$REQ-$STAMP${SCENARIO:+-$SCENARIO}"
  # Prune old runs.
  keep="${CONFORMANCE_KEEP_RUNS:-20}"
  if [[ -d "$CACHE/results" ]]; then
    mapfile -t old < <(ls -1dt "$CACHE/results"/*/ 2>/dev/null | tail -n +"$((keep + 1))")
    ((${#old[@]})) && rm -rf -- "${old[@]}"
  fi
fi
case "$URL" in
  http://localhost[:/]*|http://127.0.0.1[:/]*|http://\[::1\][:/]*) ;;
  *) echo "conformance.sh: warning: dns-rebinding-protection fails for non-localhost URLs ($URL)" >&2 ;;
esac

# Wait for the server to answer HTTP at all (any status).
wait_s="${CONFORMANCE_WAIT:-15}"
deadline=$((SECONDS + wait_s))
# (-w prints the status even when curl then times out on an SSE body; 000 = no answer.)
until code="$(curl -s -o /dev/null -m 2 -w '%{http_code}' "$URL" 2>/dev/null || true)" && [[ "$code" != "000" && -n "$code" ]]; do
  if ((SECONDS >= deadline)); then
    echo "conformance.sh: $URL did not answer within ${wait_s}s" >&2
    exit 2
  fi
  sleep 0.3
done

mkdir -p "$RESULTS"

if [[ -n "$SCENARIO" ]]; then
  cmd=("$NODE" "$CLI" server --url "$URL" --spec-version "$REQ" --force -o "$RESULTS" "$@")
else
  cmd=("$NODE" "$CLI" server --url "$URL" --requirements "$REQ" -o "$RESULTS" "$@")
fi

echo "conformance.sh: $("$NODE" --version) @modelcontextprotocol/conformance@$CONFORMANCE_VERSION" >&2
echo "conformance.sh: ${cmd[*]}" >&2
start=$SECONDS
set +e
"${cmd[@]}" 2>&1 | tee "$RESULTS/harness.log"
harness_rc=${PIPESTATUS[0]}
set -e
elapsed=$((SECONDS - start))

# ---------------------------------------------------------------- summary ---
cat >"$CACHE/summarize.mjs" <<'EOF'
// Generated by scripts/conformance.sh: summarise checks.json files of one run.
import fs from "node:fs";
import path from "node:path";
import { parse } from "yaml";

const [resultsDir, req, reqFile, scenarioArg, harnessRc, elapsed, baseline] = process.argv.slice(2);
const set = parse(fs.readFileSync(reqFile, "utf8")) ?? {};
const scored = new Set(set.server ?? []);
const notScored = new Map(
  (set.not_scored ?? []).filter((e) => e.leg === "server").map((e) => [e.scenario, e.reason]),
);
const DIR_RE = /^server-(.+)-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}-\d{3}Z$/;
const results = new Map();
for (const d of fs.readdirSync(resultsDir)) {
  const m = DIR_RE.exec(d);
  const f = path.join(resultsDir, d, "checks.json");
  if (!m || !fs.existsSync(f)) continue;
  results.set(m[1], JSON.parse(fs.readFileSync(f, "utf8")));
}
const expected = scenarioArg ? [scenarioArg] : [...scored, ...notScored.keys()];
const one = (s) => String(s ?? "").replace(/\s+/g, " ").trim().slice(0, 400);
const rows = [];
for (const name of expected) {
  const checks = results.get(name);
  const kind = scored.has(name) ? "scored" : notScored.has(name) ? `not scored: ${notScored.get(name)}` : "not in set";
  if (!checks) {
    rows.push({ name, kind, missing: true, fail: 1, ok: 0, warn: 0, skip: 0, checks: [] });
    continue;
  }
  const n = (st) => checks.filter((c) => c.status === st).length;
  rows.push({ name, kind, ok: n("SUCCESS"), fail: n("FAILURE"), warn: n("WARNING"), skip: n("SKIPPED"), checks });
}
const w = Math.max(...rows.map((r) => r.name.length), 10);
console.log(`\n=== conformance.sh summary: requirements ${req}${scenarioArg ? ` (scenario ${scenarioArg})` : ""} ===`);
for (const r of rows) {
  const mark = r.missing ? "?" : r.fail ? "✗" : r.warn ? "~" : "✓";
  const detail = r.missing ? "NO RESULT (scenario did not run)" : `${r.ok} ok, ${r.fail} failed, ${r.warn} warnings, ${r.skip} skipped`;
  console.log(`${mark} ${r.name.padEnd(w)}  [${r.kind}]  ${detail}`);
}
const bad = rows.flatMap((r) => r.checks.filter((c) => c.status === "FAILURE").map((c) => ({ r, c })));
if (bad.length) {
  console.log("\nFailed checks:");
  for (const { r, c } of bad) console.log(`  ${r.kind === "scored" ? "" : "(not scored) "}${r.name} :: ${c.id}: ${one(c.errorMessage || c.description)}`);
}
const warns = rows.flatMap((r) => r.checks.filter((c) => c.status === "WARNING").map((c) => ({ r, c })));
if (warns.length) {
  console.log("\nWarnings (never fail a run):");
  for (const { r, c } of warns) console.log(`  ${r.name} :: ${c.id}: ${one(c.errorMessage || c.description)}`);
}
const sc = rows.filter((r) => r.kind === "scored");
const ns = rows.filter((r) => r.kind !== "scored");
const scChecks = sc.reduce((a, r) => [a[0] + r.ok, a[1] + r.fail, a[2] + r.warn], [0, 0, 0]);
console.log(`\nresults: ${resultsDir}`);
console.log(`harness exit code: ${harnessRc}; wall time: ${elapsed}s`);
if (scenarioArg) {
  const r = rows[0];
  const failed = r.missing || r.fail > 0;
  console.log(`checks: ${r.ok} ok / ${r.fail} failed / ${r.warn} warnings (${r.kind})`);
  console.log(`scenario: ${failed ? 0 : 1} passed, ${failed ? 1 : 0} failed`);
  process.exit(failed ? 1 : 0);
}
const scFailed = sc.filter((r) => r.missing || r.fail > 0).length;
const nsFailed = ns.filter((r) => r.missing || r.fail > 0).length;
console.log(`checks in scored scenarios: ${scChecks[0]} ok / ${scChecks[1]} failed / ${scChecks[2]} warnings`);
console.log(`not scored (no effect on exit code): ${ns.length - nsFailed} of ${ns.length} scenarios clean`);
if (baseline) {
  // The harness applied --expected-failures; its exit code is the verdict.
  console.log(`baseline run (verdict = harness exit code ${harnessRc}): scored scenarios ${sc.length - scFailed} clean / ${scFailed} failing`);
  process.exit(0);
}
console.log(`scored: ${sc.length - scFailed} passed, ${scFailed} failed`);
process.exit(scFailed ? 1 : 0);
EOF

set +e
"$NODE" "$CACHE/summarize.mjs" "$RESULTS" "$REQ" "$PKG_DIR/requirements/$REQ.yaml" "$SCENARIO" "$harness_rc" "$elapsed" "$BASELINE"
summary_rc=$?
set -e
if [[ -n "$BASELINE" ]]; then
  # --expected-failures: the harness applies the baseline (known failures pass, stale
  # entries fail), so its exit code is the verdict.
  exit "$harness_rc"
fi
if ((summary_rc != 0)); then
  exit 1
fi
if ((harness_rc != 0)) && [[ -z "$SCENARIO" ]]; then
  # No scored failure in the result files, yet the harness failed: treat as broken run.
  echo "conformance.sh: harness exited $harness_rc without a scored failure in the results; treating as failure" >&2
  exit "$harness_rc"
fi
exit 0
