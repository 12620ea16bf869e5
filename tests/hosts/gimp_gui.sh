#!/bin/sh
# Run INSIDE the root under xvfb-run (tests/test_hosts_gimp.py): GIMP 3 opens IN.png,
# runs python-fu-bokehkit INTERACTIVELY (the engine's Qt dialog, else GIMP's procedure
# dialog), a screenshot once it is up, then GIMP is stopped.
#   xvfb-run -a -s "-screen 0 1600x1000x24" gimp_gui.sh IN.png OUT.png
IN=$1 OUT=$2
LOG=${OUT%.png}.log
# -n: new instance (no D-Bus); the -b code blocks while the dialog is open.
BOKEHKIT_GIMP_DIALOG_TEST=1 gimp-3.0 -n --no-splash --batch-interpreter=python-fu-eval -b "
from gi.repository import Gimp, Gio
img = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path('$IN'))
Gimp.Display.new(img)
p = Gimp.get_pdb().lookup_procedure('python-fu-bokehkit')
c = p.create_config()
c.set_property('run-mode', Gimp.RunMode.INTERACTIVE)
c.set_property('image', img)
c.set_core_object_array('drawables', img.get_layers())
p.run(c)
" >"$LOG" 2>&1 &
pid=$!
t=0
while [ $t -lt "${WAIT:-120}" ] && ! grep -q 'bokehkit-gimp: \(dialog shown\|engine dialog requested\)' "$LOG"; do
  sleep 1; t=$((t+1))
done
sleep "${SETTLE:-12}"                     # the engine starts, opens its window, renders a preview
import -window root png:- | convert - -trim +repage "$OUT"   # no WM: crop to the windows
echo "gimp GUI: waited ${t}s; $(grep 'bokehkit-gimp' "$LOG" | tr '\n' ' ')"
kill $pid 2>/dev/null; sleep 3; kill -9 $pid 2>/dev/null
sleep 2
# an engine of ours still there? (ps sees the host's processes too: ours have our HOME)
for e in $(pgrep -f 'bokehkit serve'); do
  if tr '\0' '\n' </proc/$e/environ 2>/dev/null | grep -qx "HOME=$HOME"; then
    echo "gimp GUI: ENGINE LEFT RUNNING (pid $e)"; exit 1
  fi
done
grep -q 'bokehkit-gimp: \(dialog shown\|engine dialog requested\)' "$LOG"
