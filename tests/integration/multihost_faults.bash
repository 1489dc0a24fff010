# One multi-host fault trial (issue 24), shared by tests/integration/
# multihost_faults.sh, multihost_hang.sh (each fault once) and
# bench/netfault/run.sh (each fault at random moments, the table in
# docs/hardening.md). Sourcing it sources multihost.bash ($here: the
# repository) and needs $RAFFLE; mf_trial needs the cluster up (mf_up, or
# mh_up 3) and $T, $CD set.
#
#   mf_up                     what a fault test starts with: prerequisites,
#                             a 3-host cluster, mf_job 6 800
#   mf_job COUNT SLEEP_MS     writes $T/mf.json: COUNT no-op tasks of SLEEP_MS
#   mf_trial FAULT AT HB      one sweep on h1:1,h2:1,h3:1 (rank 0 on h1, a
#                             worker on each of h2 and h3) with --heartbeat
#                             HB, FAULT applied AT seconds after the first
#                             task started (the ledger's first "started"):
#     cut-worker   h3's cable pulled (netns-cluster.sh cut h3)
#     kill-worker  every raffle process on h3 killed (-9): the node's work dies
#     hang-worker  every raffle process on h3 stopped (SIGSTOP)
#     partition    h1's cable pulled: rank 0 (and mpirun) cut off from every worker
#   then waits for the launcher, watches every namespace's process table
#   until it is empty, mends the cable, reruns the sweep without the fault
#   and prints one line of KEY=VALUE:
#     rc          the faulted run's launcher exit status
#     hit         1 if the fault found a task running on the host it hit
#     recorded    "lost" ledger lines of the faulted run (heartbeat) plus
#                 those its rerun wrote for attempts the run left open
#     lost        tasks not done after the rerun (must be 0)
#     dup         tasks with more than one "done" line (must be 0)
#     left        processes alive in any namespace MF_LEFT_S (20) s after the
#                 launcher ended
#     detect_s    fault to the first "lost" ledger line of the run (the
#                 heartbeat; for kill-worker rank 0's ping once the
#                 launcher starts ending the job); without one, fault to
#                 the launcher's end
#     quiet_s     fault to the moment no raffle process is left on the
#                 host(s) it hit (the workers' own exit, or the launcher's kill)
#     hostgone_s  fault to the moment no process at all (Open MPI's orted
#                 and the launcher agent's shell too) is left on the host(s)
#                 it hit
#     gone_s      fault to the moment no process at all is left in any
#                 namespace (the launcher, orted and rank 0 too)
#     launcher_s  fault to the launcher's (mpirun's) end
#     endquiet_s  rank 0's end of the job (the ledger's "finished" line) to
#                 the moment quiet_s measures: how long a hung rank outlives
#                 the job's end ("-" when rank 0 wrote no such line)
#     endgone_s   the same to the moment gone_s measures
#     rerun_rc    the rerun's exit status (must be 0)
#   mf_check FAULT LINE       prints LINE and fails (multihost.bash's fail)
#                             unless its lost, dup, left and rerun_rc are 0

: "${RAFFLE:?set RAFFLE to the raffle binary}"
. "$here/tests/integration/multihost.bash"

mf_check() {
  local f=$1 l=$2 k v
  echo "$l"
  for k in lost dup left rerun_rc; do
    v=$(echo "$l" | sed -n "s/.* $k=\([^ ]*\).*/\1/p")
    [ "$v" = 0 ] || fail "$f: $k=$v (must be 0)"
  done
}

mf_up() {
  mh_prereqs
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
  mh_up 3
  mf_job 6 800
}

mf_job() {
  printf '{"name": "mf", "dataset": "synthetic", "model": "lenet-300-100",\n "experiments": [{"kind": "noop", "count": %d, "sleep_ms": %d}]}\n' \
    "$1" "$2" > "$T/mf.json"
}

_mf_now() { date +%s.%N; }
_mf_sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a - b }'; }

mf_trial() {
  local fault=$1 at=$2 hb=$3
  # the trial's number from the stores so far (callers run it in $(...))
  _mf_n=$(( $(find "$T" -maxdepth 1 -name 'mf-*' -type d | wc -l) + 1 ))
  local store=$T/mf-$_mf_n L log=$T/log-mf-$_mf_n
  L=$store/mf/ledger.jsonl
  mkdir -p "$store"
  local t0 tf rc host=h3 act
  case $fault in
    cut-worker)  act="cut h3" ;;
    kill-worker) act="signal h3 KILL raffle" ;;
    hang-worker) act="signal h3 STOP raffle" ;;
    partition)   act="cut h1" host="h2 h3" ;;
    *) echo "mf_trial: unknown fault $fault" >&2; return 2 ;;
  esac
  t0=$(_mf_now)
  MH_TIMEOUT=90 cl run mpirun --host h1:1,h2:1,h3:1 -np 3 "$RAFFLE" sweep --quiet --heartbeat "$hb" \
    --store "$store" "$T/mf.json" >"$log" 2>&1 &
  local mpid=$!
  # AT counts from the first task's start (the ledger's first "started"
  # line), not from the launch: on a loaded machine the launch alone can
  # take seconds, and a fault before the ranks run is another case
  local k
  for k in $(seq 1 600); do
    grep -qs '"event":"started"' "$L" && break
    kill -0 "$mpid" 2>/dev/null || break
    sleep 0.1
  done
  sleep "$at"
  # did the fault find work on the host it hits? (a task started there and not ended)
  local hit=0 h
  for h in $host; do
    [ -f "$L" ] && [ -n "$(jq -r --arg h "$h" 'select(.host==$h and (.event=="started" or .event=="done")) | "\(.event) \(.task)"' "$L" 2>/dev/null |
      awk '$1=="started" { o[$2]=1 } $1=="done" { delete o[$2] } END { for (k in o) print k }')" ] && hit=1
  done
  # shellcheck disable=SC2086
  "$CL" -d "$CD" $act >/dev/null 2>&1
  tf=$(_mf_now)
  # every namespace's process table, from the fault until it is empty (or
  # MF_LEFT_S after the launcher's end), beside the launcher
  local quiet_s="" hostgone_s="" gone_s="" left=0 te="" now all hp quiet_at="" gone_at=""
  hp=$(for h in $host; do awk -v h="$h" '$1 == h { print $3 }' "$CD/hosts"; done)
  while :; do
    now=$(_mf_now)
    if [ -z "$te" ] && ! kill -0 "$mpid" 2>/dev/null; then wait "$mpid"; rc=$?; te=$now; fi
    if [ -z "$quiet_s" ]; then
      # raffle processes on the host(s) the fault hit
      local mine="" p ns
      for ns in $hp; do
        for p in $(ip netns pids "$ns" 2>/dev/null); do
          case "$( { tr '\0' ' ' < "/proc/$p/cmdline"; } 2>/dev/null)" in *raffle\ sweep*|*raffle\ run*) mine="$mine $p" ;; esac
        done
      done
      [ -z "$(live_pids $mine)" ] && quiet_s=$(_mf_sub "$now" "$tf") quiet_at=$now
    fi
    if [ -z "$hostgone_s" ]; then
      local any="" ns
      for ns in $hp; do any="$any $(ip netns pids "$ns" 2>/dev/null)"; done
      [ -z "$(live_pids $any)" ] && hostgone_s=$(_mf_sub "$now" "$tf")
    fi
    all=$(live_pids $(mh_procs))
    # (a host may empty between its own check above and this one: then it
    # was empty by now too)
    [ -n "$te" ] && [ -z "$all" ] && { gone_s=$(_mf_sub "$now" "$tf") gone_at=$now
      quiet_s=${quiet_s:-$gone_s} quiet_at=${quiet_at:-$now} hostgone_s=${hostgone_s:-$gone_s}; break; }
    if [ -n "$te" ] && awk -v e="$(_mf_sub "$now" "$te")" -v l="${MF_LEFT_S:-20}" 'BEGIN { exit !(e > l) }'; then
      left=$(echo "$all" | wc -w)
      echo "mf: $fault: left ${MF_LEFT_S:-20} s after the launcher's end: $(for p in $all; do tr '\0' ' ' < /proc/$p/cmdline; echo; done)" >&2
      gone_s=">$(_mf_sub "$now" "$tf")"; quiet_s=${quiet_s:-$gone_s}; hostgone_s=${hostgone_s:-$gone_s}
      break
    fi
    sleep 0.1
  done
  # processes still there are ended (down would do it), so the next trial starts clean
  [ -n "$(live_pids $(mh_procs))" ] && for h in h1 h2 h3; do "$CL" -d "$CD" signal "$h" KILL >/dev/null 2>&1; done
  case $fault in cut-worker) "$CL" -d "$CD" mend h3 ;; partition) "$CL" -d "$CD" mend h1 ;; esac >/dev/null 2>&1
  local first detect_s=""
  first=$(jq -r 'select(.event=="lost") | .time' "$L" 2>/dev/null | head -n 1)
  if [ -n "$first" ]; then detect_s=$(_mf_sub "$(date -d "$first" +%s.%N)" "$tf")
  elif [ "$fault" = kill-worker ]; then detect_s=$(_mf_sub "$te" "$tf"); fi
  local rec_run fin endquiet_s=- endgone_s=-
  rec_run=$(jq -r 'select(.event=="lost") | .task' "$L" 2>/dev/null | wc -l)
  fin=$(jq -r 'select(.event=="finished") | .time' "$L" 2>/dev/null | tail -n 1)
  if [ -n "$fin" ]; then
    fin=$(date -d "$fin" +%s.%N)
    [ -n "$quiet_at" ] && endquiet_s=$(_mf_sub "$quiet_at" "$fin")
    [ -n "$gone_at" ] && endgone_s=$(_mf_sub "$gone_at" "$fin")
  fi
  # the rerun, without the fault
  MH_TIMEOUT=90 cl run mpirun --host h1:1,h2:1,h3:1 -np 3 "$RAFFLE" sweep --quiet --heartbeat "$hb" \
    --store "$store" "$T/mf.json" >"$log-rerun" 2>&1
  local rerun_rc=$? total done dup recorded
  total=$("$RAFFLE" validate --json "$T/mf.json" | jq .tasks)
  done=$(jq -r 'select(.event=="done") | .task' "$L" | sort -u | wc -l)
  dup=$(jq -r 'select(.event=="done") | .task' "$L" | sort | uniq -d | wc -l)
  recorded=$(jq -r 'select(.event=="lost") | .task' "$L" | wc -l)
  echo "fault=$fault at=$at rc=$rc hit=$hit recorded=$recorded recorded_in_run=$rec_run lost=$((total - done)) dup=$dup left=$left detect_s=${detect_s:--} quiet_s=$quiet_s hostgone_s=$hostgone_s gone_s=$gone_s launcher_s=$(_mf_sub "$te" "$tf") endquiet_s=$endquiet_s endgone_s=$endgone_s rerun_rc=$rerun_rc"
}
