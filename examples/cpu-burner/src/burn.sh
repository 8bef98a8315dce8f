#!/bin/sh
# cpu-burner: spin in the shell itself (no child processes, so CPU time = wall time of the loop) for
# BURN_SECONDS, as back-to-back "inferences" of INFERENCE_MS each; every 10th is a slow frame of twice
# the time. After each one print the JSON line the profiler reads: {"metric": "inference_ms", "value": N}.
# Needs busybox sh (ash): $EPOCHREALTIME is the time in seconds with microseconds.
set -eu
burn_seconds=${BURN_SECONDS:-5}
inference_ms=${INFERENCE_MS:-50}

case ${EPOCHREALTIME:-} in
    *.*) ;;
    *) echo "cpu-burner: this shell has no \$EPOCHREALTIME; run it with busybox sh" >&2; exit 2 ;;
esac
# float seconds -> microseconds (busybox sh arithmetic is integer only)
whole=${burn_seconds%.*}
frac=$(printf '%s000000' "$(echo "$burn_seconds" | sed -n 's/^[0-9]*\.\([0-9]*\)$/\1/p')" | cut -c1-6)
t=$EPOCHREALTIME
end=$(( ${t%.*}${t#*.} + ${whole:-0} * 1000000 + 10#$frac ))

count=0
while t=$EPOCHREALTIME; [ "${t%.*}${t#*.}" -lt "$end" ]; do
    count=$((count + 1))
    want=$((inference_ms * 1000))
    [ $((count % 10)) -eq 0 ] && want=$((want * 2))
    start=$EPOCHREALTIME
    start=${start%.*}${start#*.}
    stop=$((start + want))
    while :; do
        t=$EPOCHREALTIME
        [ "${t%.*}${t#*.}" -lt "$stop" ] || break
    done
    took=$(( ${t%.*}${t#*.} - start ))
    printf '{"metric": "inference_ms", "value": %d.%03d}\n' $((took / 1000)) $((took % 1000))
done
# the shell's own CPU time (user + system, from the `times` builtin: "0m1.234s 0m0.010s"), so that a
# profiler's CPU figure can be checked against the plugin's own account even on a busy machine
# (in this shell: `$(times)` would report the subshell's zero)
account=$(mktemp)
times >"$account"
read -r user system <"$account"
rm -f "$account"
set -- "$user" "$system"
cpu_ms=0
for part in "$1" "$2"; do
    minutes=${part%%m*}; rest=${part#*m}; rest=${rest%s}
    seconds=${rest%.*}; millis=${rest#*.}
    cpu_ms=$((cpu_ms + minutes * 60000 + seconds * 1000 + 10#$millis))
done
printf '{"metric": "self_cpu_s", "value": %d.%03d}\n' $((cpu_ms / 1000)) $((cpu_ms % 1000))
echo "cpu-burner: $count inferences in ${burn_seconds}s" >&2
