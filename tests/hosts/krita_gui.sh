#!/bin/sh
# Run INSIDE the root under xvfb-run (tests/test_hosts_krita.py): Krita with IN.png, the
# Bokeh docker shown and Apply pressed by the plug-in's test hooks, a screenshot of the
# screen once the docker reports the render done, then Krita is stopped.
#   xvfb-run -a -s "-screen 0 1600x1000x24" krita_gui.sh IN.png OUT.png PARAMS_JSON
IN=$1 OUT=$2
LOG=${OUT%.png}.log
BOKEHKIT_KRITA_SHOW_DOCKER=1 BOKEHKIT_KRITA_AUTOAPPLY=$3 krita --nosplash "$IN" >"$LOG" 2>&1 &
pid=$!
t=0
while [ $t -lt "${WAIT:-150}" ] && ! grep -q '^\[bokehkit\] \(done\|error\|cancelled\)' "$LOG"; do
  sleep 1; t=$((t+1))
done
sleep 3                                   # let the canvas and the docker repaint
import -window root png:- | convert - -trim +repage "$OUT"   # no WM: crop to the window
echo "krita GUI: waited ${t}s; $(grep '^\[bokehkit\]' "$LOG" | tail -2 | tr '\n' ' ')"
kill $pid 2>/dev/null; sleep 3; kill -9 $pid 2>/dev/null
rm -rf /tmp/KRITA_SWAP_FILE_* 2>/dev/null
sleep 2
# an engine of ours still there? (ps sees the host's processes too: ours have our HOME)
for e in $(pgrep -f 'bokehkit serve'); do
  if tr '\0' '\n' </proc/$e/environ 2>/dev/null | grep -qx "HOME=$HOME"; then
    echo "krita GUI: ENGINE LEFT RUNNING (pid $e)"; exit 1
  fi
done
grep -q '^\[bokehkit\] done' "$LOG"
