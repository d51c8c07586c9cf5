#!/bin/bash
# serve-probe.sh LOG SERVE HEALTH: start SERVE (a shell command that runs `sesame serve`, e.g. `make run`)
# in its own session, its output to LOG; run HEALTH (a shell command that runs `sesame health`) until it
# prints SERVING (120 s at most); then send SIGTERM to the `sesame serve` process alone (not to make or a
# wrapper, which then exit with its status) and expect SERVE to end with status 0 within 60 s: a clean drain.
# Used by tools/fresh-debian-check.sh (`make run` on a fresh Debian) and tools/image-check.sh (the image's
# start step). Exit 1, with the end of LOG, on any failure. Needs only bash and /proc (no procps).
set -euo pipefail
log=$1 serve=$2 health=$3
mkdir -p "$(dirname "$log")"
setsid bash -c "$serve" >"$log" 2>&1 </dev/null &
leader=$!

fail() {
    echo "serve-probe: $*" >&2
    tail -n 40 "$log" >&2 || true
    kill -KILL -- "-$leader" 2>/dev/null || true
    exit 1
}

# The pid of the `sesame serve` process in the new session: an argument naming `sesame`, then `serve`.
serve_pid() {
    local stat fields pid previous argument
    for stat in /proc/[0-9]*/stat; do
        pid=${stat#/proc/}
        pid=${pid%/stat}
        fields=$(cat "$stat" 2>/dev/null) || continue
        fields=${fields##*) }
        read -r _ _ _ session _ <<<"$fields"
        [ "$session" = "$leader" ] || continue
        previous=""
        while IFS= read -r -d '' argument; do
            if [ "$argument" = serve ] && [ "${previous##*/}" = sesame ]; then
                echo "$pid"
                return 0
            fi
            previous=$argument
        done <"/proc/$pid/cmdline" 2>/dev/null || true
    done
    return 1
}

answer=""
for _ in $(seq 120); do
    kill -0 "$leader" 2>/dev/null || { wait "$leader" || true; fail "'$serve' exited before serving"; }
    answer=$(bash -c "$health" 2>&1) || true
    [ "$answer" = SERVING ] && break
    sleep 1
done
[ "$answer" = SERVING ] || fail "'$health' did not answer SERVING within 120 s (last answer: $answer)"
echo "serve-probe: '$health' answered $answer"
pid=$(serve_pid) || fail "no 'sesame serve' process found in the session of '$serve'"
kill -TERM "$pid"
for _ in $(seq 60); do
    kill -0 "$leader" 2>/dev/null || break
    sleep 1
done
kill -0 "$leader" 2>/dev/null && fail "'$serve' still running 60 s after SIGTERM"
status=0
wait "$leader" || status=$?
[ "$status" = 0 ] || fail "'$serve' exited with status $status after SIGTERM"
echo "serve-probe: sesame serve (pid $pid) drained on SIGTERM and '$serve' exited 0"
