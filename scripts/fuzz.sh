#!/usr/bin/env bash
# Run every cargo-fuzz target for a set time and summarise runs, coverage and
# findings.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     # default 600 s each, every target
#
# Stable rustc with RUSTC_BOOTSTRAP=1 takes the -Z flags cargo-fuzz passes (no
# nightly needed); cargo-fuzz is installed if absent. Each target starts from
# its committed seeds (fuzz/seeds/<target>, see fuzz/seed.py) plus the working
# corpus of earlier runs (fuzz/corpus/<target>, not committed). A crash, a
# timeout (a single input over FUZZ_TIMEOUT s) or running out of memory (over
# FUZZ_RSS_MB) ends that target with its input in fuzz/artifacts/<target>/ and
# makes the script fail. Knobs: FUZZ_SANITIZER (address), FUZZ_TIMEOUT (10),
# FUZZ_RSS_MB (2048), FUZZ_JOBS (1 process per target), FUZZ_NICE (10).
set -uo pipefail

seconds="${1:-600}"
shift || true
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo/fuzz" || exit 1
export RUSTC_BOOTSTRAP=1

sanitizer="${FUZZ_SANITIZER:-address}"
timeout_s="${FUZZ_TIMEOUT:-10}"
rss_mb="${FUZZ_RSS_MB:-2048}"
nice_n="${FUZZ_NICE:-10}"

die() { echo "fuzz.sh: $*" >&2; exit 2; }

[[ "$seconds" =~ ^[0-9]+$ ]] || die "SECONDS must be a number, got '$seconds'"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz.sh: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked || die "cannot install cargo-fuzz"
fi

if (($# > 0)); then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list) || die "cargo fuzz list failed"
fi
((${#targets[@]} > 0)) || die "no fuzz targets"

echo "fuzz.sh: building ${#targets[@]} targets (release, sanitizer $sanitizer)" >&2
nice -n "$nice_n" cargo fuzz build -O -s "$sanitizer" >&2 || die "build failed"

logs="$repo/fuzz/target/logs"
mkdir -p "$logs"
failed=0
summary=()
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "seeds/$t" "artifacts/$t"
  log="$logs/$t.log"
  before=$(find "artifacts/$t" -type f | wc -l)
  echo "fuzz.sh: $t for ${seconds}s" >&2
  nice -n "$nice_n" cargo fuzz run -O -s "$sanitizer" "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$seconds" -timeout="$timeout_s" -rss_limit_mb="$rss_mb" \
    -print_final_stats=1 >"$log" 2>&1
  rc=$?
  after=$(find "artifacts/$t" -type f | wc -l)
  # libFuzzer's last status line: "#RUNS DONE cov: EDGES ft: FEATURES corp: N/SIZE ..."
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  edges=$(grep -oE '(DONE|pulse|NEW|REDUCE|INITED) +cov: [0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
  corpus=$(grep -oE 'corp: [0-9]+' "$log" | grep -oE '[0-9]+$' | tail -1)
  found=$((after - before))
  kind="ok"
  if grep -q 'ERROR: libFuzzer: timeout' "$log"; then kind="TIMEOUT"
  elif grep -q 'ERROR: libFuzzer: out-of-memory' "$log"; then kind="OUT-OF-MEMORY"
  elif grep -qE 'ERROR: (AddressSanitizer|libFuzzer)|panicked at' "$log"; then kind="CRASH"
  elif ((rc != 0)); then kind="FAILED (rc $rc)"
  fi
  [[ "$kind" == "ok" && $found -eq 0 ]] || failed=1
  summary+=("$(printf '%-22s %12s %8s %8s %6s  %s' "$t" "${runs:-?}" "${edges:-?}" "${corpus:-?}" "$found" "$kind")")
done

printf '\n%-22s %12s %8s %8s %6s  %s\n' target runs edges corpus new result
printf '%s\n' "${summary[@]}"
echo "($seconds s each; logs in fuzz/target/logs/, inputs that failed in fuzz/artifacts/)"
exit "$failed"
