# Shared by tests/integration/sweep_lost.sh and sweep_startup.sh (sourced
# with $here set; not a test itself: the runner runs *.sh): ranks of
# `mpirun -np N` on this one machine.
#   T              temporary directory, removed at exit (kept with KEEP=1)
#   ml_on_exit     a command run at exit first (sweep_lost.sh: continue the
#                  processes it stopped)
#   fail MSG       prints MSG and the tails of $T/log-*, exit 1
#   desc PID       the descendants of PID: this test's own processes, never
#                  another sweep's
. "$here/tests/integration/lib.sh"
: "${RAFFLE:?set RAFFLE to the raffle binary}"
need_cmd mpirun jq pgrep
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
T=$(mktemp -d)
ml_on_exit=:
trap 'eval "$ml_on_exit"; [ -n "${KEEP:-}" ] || rm -rf "$T"' EXIT
fail() { echo "FAIL: $*"; for f in "$T"/log-*; do [ -f "$f" ] && { echo "== $f"; tail -n 15 "$f"; }; done; exit 1; }
desc() { local c; for c in $(pgrep -P "$1"); do echo "$c"; desc "$c"; done; }
