#!/usr/bin/env bash
# Runs unit test binaries under valgrind memcheck with --leak-check=full and
# reports, per binary, the errors and leaks valgrind found in every process
# (Criterion runs each test in a child process it spawns from the same
# binary, so children are traced and each writes its own log).
#
# Usage: scripts/valgrind-unit.sh [BINARY...]   (default: build/tests/test_*)
# Env:   VALGRIND_TIMEOUT  seconds per binary (default 900)
#        VALGRIND_TEST_TIMEOUT  seconds per Criterion test (default 600)
#        VALGRIND_LOGS     keep the logs here (default: a temp dir, removed)
# Exit status 1 if any binary failed its tests under valgrind or valgrind
# reported an error or a definite/indirect leak in any process.
set -u
command -v valgrind >/dev/null || { echo "valgrind-unit: valgrind not installed (apt-get install valgrind)" >&2; exit 2; }
[ $# -gt 0 ] || set -- build/tests/test_*
timeout_s=${VALGRIND_TIMEOUT:-900}
logs=${VALGRIND_LOGS:-}
keep=1
[ -n "$logs" ] || { logs=$(mktemp -d); keep=0; }
mkdir -p "$logs"
bad=0; total=0
for t in "$@"; do
  [ -x "$t" ] || continue
  total=$((total + 1))
  name=$(basename "$t")
  rm -f "$logs/$name".*.log
  start=$(date +%s)
  # --jobs 1: one test process at a time (memory); OpenBLAS single-threaded
  # so its worker threads' buffers do not show up as "possibly lost".
  OPENBLAS_NUM_THREADS=1 timeout "$timeout_s" valgrind --quiet --trace-children=yes --child-silent-after-fork=yes \
    --leak-check=full --show-leak-kinds=definite,indirect --errors-for-leak-kinds=definite,indirect \
    --error-exitcode=99 --log-file="$logs/$name.%p.log" "$t" --jobs 1 --timeout "${VALGRIND_TEST_TIMEOUT:-600}" >"$logs/$name.out" 2>&1
  rc=$?
  dur=$(( $(date +%s) - start ))
  # --quiet: a log holds only errors and leak records, so any text is a finding
  errs=$(grep -l -E '^==[0-9]+== +[^ ]' "$logs/$name".*.log 2>/dev/null | wc -l)
  lost=$(cat "$logs/$name".*.log 2>/dev/null | grep -c -E 'are (definitely|indirectly) lost')
  summary=$(tail -n 1 "$logs/$name.out")
  if [ "$rc" -ne 0 ] || [ "$errs" -ne 0 ] || [ "$lost" -ne 0 ]; then
    bad=$((bad + 1))
    echo "valgrind $name: FAILED (exit $rc, $errs processes with findings, $lost leak records, ${dur}s) $summary"
    grep -l -E '^==[0-9]+== +[^ ]' "$logs/$name".*.log 2>/dev/null | head -n 3 | while read -r l; do head -n 40 "$l"; done
  else
    echo "valgrind $name: clean (${dur}s) $summary"
  fi
done
echo "valgrind: $((total - bad)) of $total test binaries clean"
[ "$keep" -eq 1 ] && echo "valgrind: logs in $logs" || rm -rf "$logs"
[ "$bad" -eq 0 ]
