"""A photographer's sessions in the real GIMP, driven with the mouse and keyboard (xdotool),
for tests/hosts/test_hosts_gimp.py. Runs INSIDE the root under xvfb-run:

    xvfb-run -a -s "-screen 0 1600x1000x24" python3 gimp_mouse.py OUT_DIR

Session 1: the photo with a layer mask (tests/hosts/gimp_session.py watches GIMP's side).
Lens Bokeh is run from GIMP's command search; in the engine's dialog the aperture slider is
clicked and OK pressed. The mask is then deleted, the result selected, and Filters > Re-Show
Last (Shift+Ctrl+F) reopens the filter on the result (a re-edit); OK; Ctrl+Z.
Session 2: GIMP again; the filter opens with the settings of session 1; Cancel.
The dialog reports its state and where its buttons are (BOKEHKIT_DIALOG_REPORT). Writes
OUT_DIR/report.json, the logs and screenshots; the test judges them.
"""

import json
import os
import subprocess
import sys
import time

from guikit import click, engines_left, wait_for_display, xdo
from guikit import screenshot as grab

OUT = sys.argv[1]
DIALOG = os.path.join(OUT, "dialog.json")
report = {}


def wait_file(path, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.exists(path):
            try:
                with open(path) as f:
                    return json.load(f)
            except ValueError:
                pass
        time.sleep(0.3)
    return None


def dialog_state():
    try:
        with open(DIALOG) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def screenshot(name):
    return grab(os.path.join(OUT, name), trim=True)


def gimp_windows():
    return set(xdo("search", "--onlyvisible", "--class", "gimp").split())


def gimp_window():
    """The image window (its title ends in "GIMP")."""
    for wid in gimp_windows():
        if xdo("getwindowname", wid).strip().endswith("GIMP"):
            return wid
    return None


def keys(*combos):
    """Keys to GIMP's image window (no window manager here: focus it first)."""
    wid = gimp_window()
    if wid:
        xdo("windowfocus", "--sync", wid)
    for combo in combos:
        xdo("key", "--clearmodifiers", combo)
        time.sleep(0.6)


def run_filter_from_search():
    """GIMP 3's "Search and Run a Command" (/): type the filter's name, Enter."""
    before = gimp_windows()
    keys("slash")
    time.sleep(1.5)
    for wid in gimp_windows() - before:  # the search popup: give it the keyboard
        xdo("windowfocus", "--sync", wid)
    xdo("type", "--delay", "60", "Lens Bokeh")
    time.sleep(1.5)
    screenshot("search.png")
    xdo("key", "Return")


def start_gimp(session, log_name):
    env = dict(os.environ, BK_SESSION=str(session), BOKEHKIT_DIALOG_REPORT=DIALOG,
               BOKEHKIT_GIMP_DIALOG_TEST="1")  # fmt: skip
    for name in os.listdir(OUT):
        if name.endswith(".json"):
            os.remove(os.path.join(OUT, name))
    wait_for_display()
    log = open(os.path.join(OUT, log_name), "w")
    script = "exec(open('/bokehkit/tests/hosts/gimp_session.py').read())"
    return subprocess.Popen(
        ["gimp", "-n", "--no-splash", "--batch-interpreter=python-fu-eval", "-b", script],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip


def stop(gimp):
    gimp.kill()
    gimp.wait()
    time.sleep(3)


def session_one():
    gimp = start_gimp(1, "gimp-1.log")
    try:
        report["loaded"] = wait_file(os.path.join(OUT, "loaded.json"), 240)
        time.sleep(3)
        run_filter_from_search()
        shown = wait_file(DIALOG, 120)
        report["dialog"] = shown
        if shown is None:
            return
        time.sleep(4)  # the first preview
        screenshot("gimp-dialog.png")
        click(shown["aperture_slider"], fx=0.08)  # a page (one stop) toward f/0.95
        time.sleep(1.0)
        chosen = dialog_state()
        report["chosen"] = chosen and chosen["params"]
        click(chosen["ok"])
        report["first"] = wait_file(os.path.join(OUT, "first.json"), 300)

        os.remove(DIALOG)
        time.sleep(2)
        keys("shift+ctrl+f")  # Filters > Re-Show Last, on the selected result
        reshow = wait_file(DIALOG, 120)
        report["reshow"] = reshow
        if reshow is None:
            return
        time.sleep(4)
        screenshot("gimp-reshow.png")
        click(reshow["ok"])
        report["second"] = wait_file(os.path.join(OUT, "second.json"), 300)
        time.sleep(1)
        keys("ctrl+z")
        with open(os.path.join(OUT, "undone.json"), "w") as f:
            f.write("{}")
        report["after_undo"] = wait_file(os.path.join(OUT, "after_undo.json"), 60)
    finally:
        stop(gimp)


def session_two():
    gimp = start_gimp(2, "gimp-2.log")
    try:
        wait_file(os.path.join(OUT, "loaded.json"), 240)
        time.sleep(3)
        run_filter_from_search()
        shown = wait_file(DIALOG, 120)
        report["session2"] = shown
        if shown is not None:
            time.sleep(1)
            click(shown["cancel"])
            time.sleep(2)
    finally:
        stop(gimp)


if __name__ == "__main__":
    try:
        session_one()
        session_two()
    finally:
        report["engines_left"] = engines_left(os.environ["HOME"])
        with open(os.path.join(OUT, "report.json"), "w") as f:
            json.dump(report, f, indent=1)
