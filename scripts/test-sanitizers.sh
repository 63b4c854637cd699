#!/usr/bin/env bash
# Sanitizer and fuzzing checks (CI runs this after scripts/test.sh; see .ci/run):
#   1. a clang build with AddressSanitizer + UndefinedBehaviorSanitizer (and the libFuzzer targets),
#   2. every fuzz target for EDGEFLEET_FUZZ_SECONDS (default 30) from its seed corpus,
#   3. the unit tests of the code that handles input (asan_unit_targets below) on it, failing on
#      any sanitizer report,
#   4. a ThreadSanitizer build of the concurrency tests only (EDGEFLEET_TSAN_TESTS names them),
#   5. the whole tree built with ASan and the whole suite on it (the integration and fault tests
#      run real server and agent processes, sanitized too: a report from a child process fails
#      the run) — or EDGEFLEET_ASAN_TESTS, a ctest -R regex, instead of 3 and 5.
# CI's budget: when EDGEFLEET_CI_DEADLINE (seconds since the epoch, set by .ci/run) is set, a part
# that would not finish before it (its usual time on 2 cores, below) is skipped and named, so that
# the checks that did run still land. The order is by value per minute: fuzzing and the unit tests
# first, the integration tests (the slowest under ASan) last.
# Usage: ./scripts/test-sanitizers.sh [asan|tsan|fuzz ...]   (default: all three parts)
# Environment: EDGEFLEET_ASAN_BUILD_DIR (default build-asan), EDGEFLEET_TSAN_BUILD_DIR (build-tsan),
# EDGEFLEET_SKIP_BUILD=1 to reuse existing builds, EDGEFLEET_FUZZ_SECONDS, EDGEFLEET_ASAN_TESTS and
# EDGEFLEET_TSAN_TESTS (ctest -R regexes; empty ASan regex = every test).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib/common.sh
source scripts/lib/common.sh
# shellcheck source=scripts/lib/postgres.sh
source scripts/lib/postgres.sh

asan_dir=${EDGEFLEET_ASAN_BUILD_DIR:-build-asan}
tsan_dir=${EDGEFLEET_TSAN_BUILD_DIR:-build-tsan}
fuzz_seconds=${EDGEFLEET_FUZZ_SECONDS:-30}
asan_tests=${EDGEFLEET_ASAN_TESTS:-}
# The tests whose subject is threads, and the suites around them: the inference pool, hot swap
# and version monitor (agent_serving_test), the telemetry outbox and window recorder
# (agent_telemetry_test), the agent's state store used from two threads, the transfer watchdog,
# the metrics registry, loggers created concurrently, the connection pool, concurrent token use
# and transactions (server_store_test), the rollout controller and the telemetry rollup job.
# They stay clear of gRPC, whose Debian build is not TSan-instrumented (its lock-free internals
# would be reported as races of ours); tests/sanitizers/tsan.supp lists what the uninstrumented
# libraries they do use (libpq, SQLite, spdlog) need, with reasons.
tsan_tests=${EDGEFLEET_TSAN_TESTS:-'^(InferencePoolTest|ModelHostTest|VersionMonitorTest|ThreadPriorityTest|TelemetryOutboxTest|WindowRecorderTest|StateStoreTest|TransferWatchdogTest|StallPolicyTest|MetricsTest|LoggerTest|DatabaseTest|StoreTest|TransactTest|ControllerTest|RollupTest)\.'}
tsan_targets=(agent_serving_test agent_telemetry_test agent_state_test agent_transfer_watchdog_test
  common_metrics_test common_core_test server_store_test server_rollout_controller_test
  server_telemetry_rollup_test)
fuzzers=(fuzz_delta_bsdiff40 fuzz_delta_container fuzz_delta_tensor fuzz_manifest fuzz_onnx_walker
  fuzz_rest_json fuzz_config)
# The ASan unit tests CI runs first: the code that reads what devices, operators and files send
# (delta decoders, manifests and trust, telemetry codecs, config, request limits) and the
# agent's state and update machinery. The rest of the suite (the server's PostgreSQL stores, the
# integration and fault tests with their sanitized server and agent processes) needs the whole
# tree built, about 40 minutes here: it runs when CI's budget allows (below).
asan_unit_targets=(fuzz_regression_test common_core_test common_config_test common_crypto_test
  common_delta_test common_delta_tensor_test common_delta_transforms_test common_manifest_test
  common_telemetry_test common_metrics_test agent_state_test agent_release_trust_test
  agent_update_test agent_update_patch_test server_request_limits_test server_release_trust_test
  server_telemetry_merge_test edgefleet_test_models)

parts=("$@")
[ "${#parts[@]}" -eq 0 ] && parts=(asan tsan fuzz)
want() {
  local p
  for p in "${parts[@]}"; do [ "$p" = "$1" ] && return 0; done
  return 1
}
STEP_TOTAL=1
{ want asan || want fuzz; } && STEP_TOTAL=$((STEP_TOTAL + 1))
want asan && STEP_TOTAL=$((STEP_TOTAL + 1))
want tsan && STEP_TOTAL=$((STEP_TOTAL + 2))
want fuzz && STEP_TOTAL=$((STEP_TOTAL + 1))

sanitizer_dir=$(mktemp -d "${TMPDIR:-/tmp}/edgefleet-sanitizers.XXXXXX")
chmod 755 "$sanitizer_dir"
pg_started=''
# shellcheck disable=SC2317  # called from the EXIT trap
cleanup() {
  [ -n "$pg_started" ] && pg_stop "$sanitizer_dir/pg"
  rm -rf "$sanitizer_dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Prints how long the step that started at $1 (seconds since the epoch) took.
took() { info "took $(($(date +%s) - $1)) s"; }

# fits MINUTES WHAT: false (and says so) when WHAT, which takes about MINUTES here, would end
# after CI's deadline.
skipped=()
fits() {
  [ -n "${EDGEFLEET_CI_DEADLINE:-}" ] || return 0
  local left=$(((EDGEFLEET_CI_DEADLINE - $(date +%s)) / 60))
  [ "$left" -ge "$1" ] && return 0
  warn "skipping $2: it takes about $1 min and CI has $left min left of its budget"
  skipped+=("$2")
  return 1
}

# configure_clang DIR SANITIZERS [extra cmake args]: a clang build directory. -O1 keeps the
# sanitized tests fast enough; line tables are all a symbolized report needs.
configure_clang() {
  local dir=$1 sanitize=$2
  shift 2
  if [ -f "$dir/CMakeCache.txt" ] && ! grep -q "^EDGEFLEET_SANITIZE:STRING=$sanitize\$" "$dir/CMakeCache.txt"; then
    die "$dir is not an EDGEFLEET_SANITIZE=$sanitize build; remove it or set another directory"
  fi
  mkdir -p "$dir"
  local launcher=()
  command -v ccache >/dev/null && launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  CC=clang CXX=clang++ cmake -S "$EDGEFLEET_ROOT" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "${launcher[@]}" \
    -DCMAKE_C_FLAGS_RELWITHDEBINFO='-O1 -gline-tables-only' \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO='-O1 -gline-tables-only' \
    -DEDGEFLEET_SANITIZE="$sanitize" "$@" >"$dir/edgefleet-configure.log" 2>&1 || {
    cat "$dir/edgefleet-configure.log" >&2
    die "cmake configure of $dir failed (output above)"
  }
}

# Fails when a sanitizer wrote a report (log_path files), printing them: a report from a server or
# agent process that a test started counts even when the test itself passed.
check_reports() {
  local kind=$1 reports
  reports=$(find "$sanitizer_dir/reports" -type f -size +0 2>/dev/null | sort || true)
  [ -z "$reports" ] && return 0
  local f
  for f in $reports; do
    printf '\n--- %s\n' "$f" >&2
    head -c 20000 "$f" >&2
  done
  die "$kind reported problems (above)"
}

# run_ctest KIND DIR [ctest arguments]: runs the tests (sanitized processes are 2-5x slower: a
# longer per-test timeout than scripts/test.sh's), then fails on a failed test or any report.
run_ctest() {
  local kind=$1 dir=$2 status=0
  shift 2
  rm -rf "$sanitizer_dir/reports"
  mkdir -p "$sanitizer_dir/reports"
  ctest --test-dir "$dir" --output-on-failure -j2 --timeout 900 --no-tests=error "$@" || status=$?
  check_reports "$kind"
  [ "$status" -eq 0 ] || die "tests failed under $kind (status $status, failing tests above)"
  ok "no $kind report"
}

export ASAN_SYMBOLIZER_PATH=${ASAN_SYMBOLIZER_PATH:-$(command -v llvm-symbolizer || command -v llvm-symbolizer-14 || true)}
symbolizer=${ASAN_SYMBOLIZER_PATH:+:external_symbolizer_path=$ASAN_SYMBOLIZER_PATH}

step "Install missing Debian packages (clang, its sanitizer runtimes and libFuzzer)"
EDGEFLEET_DEPS_SET=sanitizers ensure_deps || die "could not install the Debian packages (see above)"

asan_built=''
if { want asan || want fuzz; } && fits 20 "the ASan build (and with it fuzzing and the ASan tests)"; then
  asan_built=1
  step "Build the fuzz targets and the input-handling unit tests with ASan + UBSan into $asan_dir"
  t=$(date +%s)
  if [ "${EDGEFLEET_SKIP_BUILD:-0}" != 1 ]; then
    configure_clang "$asan_dir" address,undefined -DEDGEFLEET_FUZZ=ON
    targets=(--target "${fuzzers[@]}" delta_fuzz_seeds "${asan_unit_targets[@]}")
    [ -n "$asan_tests" ] && targets=()  # a chosen set of tests may need any binary
    cmake --build "$asan_dir" -j"$(nproc)" "${targets[@]}" ||
      die "ASan build failed (compiler output above)"
  fi
  took "$t"
fi

if want asan || want tsan; then
  pg_start "$sanitizer_dir/pg" || die "could not start PostgreSQL (output above)"
  pg_started=1
fi

# asan_tests WHAT [ctest arguments]: the tests chosen by the arguments under ASan + UBSan.
asan_tests() {
  local what=$1
  shift
  step "Run the $what under ASan + UBSan"
  local t
  t=$(date +%s)
  # Leaks are checked (detect_leaks); tests/sanitizers/lsan.supp lists the libraries' own.
  export ASAN_OPTIONS="detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1:log_path=$sanitizer_dir/reports/asan$symbolizer"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:log_path=$sanitizer_dir/reports/ubsan$symbolizer"
  export LSAN_OPTIONS="suppressions=$EDGEFLEET_ROOT/tests/sanitizers/lsan.supp:print_suppressions=0"
  run_ctest "ASan/UBSan" "$asan_dir" "$@"
  unset ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS
  took "$t"
}

if want fuzz && [ -n "$asan_built" ] && fits 5 "fuzzing"; then
  step "Fuzz every target for ${fuzz_seconds} s from its seeds"
  t=$(date +%s)
  corpus=$sanitizer_dir/corpus
  "$asan_dir/bin/delta_fuzz_seeds" "$corpus" || die "could not write the generated seeds"
  cp -r tests/fuzz/seeds/. "$corpus/"
  # The test models are tiny ONNX files: more structure for the ONNX walker to start from.
  find "$asan_dir/testdata" -name '*.onnx' -size -64k -exec cp {} "$corpus/onnx_walker/" \; 2>/dev/null || true
  export ASAN_OPTIONS="detect_leaks=1$symbolizer"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1$symbolizer"
  failed=()
  for fuzzer in "${fuzzers[@]}"; do
    name=${fuzzer#fuzz_}
    name=${name#delta_}
    mkdir -p "$sanitizer_dir/artifacts/$name" "$corpus/$name"
    # -max_len 8192: long enough for every seed, short enough to keep each run fast.
    if "$asan_dir/bin/$fuzzer" -max_total_time="$fuzz_seconds" -timeout=10 -rss_limit_mb=2048 \
      -max_len=8192 -print_final_stats=1 -artifact_prefix="$sanitizer_dir/artifacts/$name/" \
      "$corpus/$name" >"$sanitizer_dir/$name.log" 2>&1; then
      info "$fuzzer: $(grep -E '^stat::number_of_executed_units' "$sanitizer_dir/$name.log" | awk '{print $2}') runs, $(grep -oE 'cov: [0-9]+' "$sanitizer_dir/$name.log" | tail -1)"
    else
      tail -n 60 "$sanitizer_dir/$name.log" >&2
      for a in "$sanitizer_dir/artifacts/$name"/*; do
        [ -f "$a" ] && printf '    %s: %s\n' "$fuzzer" "$(base64 -w0 "$a" | head -c 4000)" >&2
      done
      failed+=("$fuzzer")
    fi
  done
  unset ASAN_OPTIONS UBSAN_OPTIONS
  [ "${#failed[@]}" -eq 0 ] ||
    die "fuzzers found problems: ${failed[*]} (inputs above in base64; add them to tests/fuzz/regressions/)"
  ok "no fuzzer finding"
  took "$t"
fi

if want asan && [ -n "$asan_built" ]; then
  if [ -n "$asan_tests" ]; then
    asan_tests "tests matching $asan_tests" -R "$asan_tests"
  elif fits 6 "the unit tests under ASan"; then
    # Only built test binaries have discovered tests: these are the ones listed above.
    asan_tests "input-handling unit tests" -L unit
  fi
fi

if want tsan && fits 25 "the TSan build and tests"; then
  step "Build the concurrency tests with TSan into $tsan_dir"
  t=$(date +%s)
  if [ "${EDGEFLEET_SKIP_BUILD:-0}" != 1 ]; then
    configure_clang "$tsan_dir" thread
    cmake --build "$tsan_dir" -j"$(nproc)" --target "${tsan_targets[@]}" ||
      die "TSan build failed (compiler output above)"
  fi
  took "$t"

  step "Run the concurrency tests under TSan (-R $tsan_tests)"
  t=$(date +%s)
  export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$EDGEFLEET_ROOT/tests/sanitizers/tsan.supp:log_path=$sanitizer_dir/reports/tsan$symbolizer"
  # Only the targets built above have tests ctest can run.
  run_ctest "TSan" "$tsan_dir" -R "$tsan_tests"
  unset TSAN_OPTIONS
  took "$t"
fi

if want asan && [ -n "$asan_built" ] && [ -z "$asan_tests" ] &&
  fits 50 "the rest of the suite under ASan (the whole tree built)"; then
  step "Build the whole tree with ASan + UBSan"
  t=$(date +%s)
  cmake --build "$asan_dir" -j"$(nproc)" || die "ASan build failed (compiler output above)"
  took "$t"
  asan_tests "whole suite"
fi

if [ "${#skipped[@]}" -gt 0 ]; then
  warn "skipped for CI's time budget: ${skipped[*]} (run ./scripts/test-sanitizers.sh without EDGEFLEET_CI_DEADLINE for all)"
fi
