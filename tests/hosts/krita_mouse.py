"""A photographer's session in the real Krita, driven with the mouse (xdotool) on a
1366×768 screen, for tests/hosts/test_hosts_krita.py. Runs INSIDE the root under xvfb-run:

    xvfb-run -a -s "-screen 0 1366x768x24" python3 krita_mouse.py OUT_DIR

Krita opens /job/in.png with the Bokeh docker shown (BOKEHKIT_KRITA_SHOW_DOCKER) and the
docker's test hook on (BOKEHKIT_KRITA_TEST: it logs where its buttons are and what happens).
Then, as a user would: make the window laptop-sized; click "Paint Blur layer" in the "no
depth" notice; paint a stroke on the canvas; Apply; click Cancel while it renders; Apply
again; on the result, move the aperture slider and flip focal length to manual and back to
auto; Apply (a re-edit); Ctrl+Z; then Krita again (the settings of the last Apply). Writes
OUT_DIR/report.json, krita.log and screenshots; every step's outcome is in the report, the
test judges it.
"""

import json
import os
import re
import subprocess
import sys
import time
import traceback

from guikit import centre, click, engines_left, wait_for_display, xdo
from guikit import screenshot as grab

OUT = sys.argv[1]
LOG = os.path.join(OUT, "krita.log")  # the session's; the restart's is krita-2.log
SCREEN = (1366, 768)
report = {"steps": []}


def note(step, **facts):
    report["steps"].append({"step": step, **facts})
    print("krita_mouse:", step, json.dumps(facts), flush=True)


def log_lines():
    """The docker's lines in Krita's log (Krita 5.2's Python writes non-ASCII as \\uXXXX)."""
    with open(LOG, errors="replace") as f:
        lines = [line.rstrip("\n") for line in f if line.startswith("[bokehkit]")]
    escaped = re.compile(r"\\u([0-9a-fA-F]{4})")
    return [escaped.sub(lambda m: chr(int(m.group(1), 16)), line) for line in lines]


def wait_for(pattern, after=0, timeout=90.0):
    """The first docker log line after line `after` matching `pattern`, and its index."""
    deadline = time.monotonic() + timeout
    rx = re.compile(pattern)
    while time.monotonic() < deadline:
        lines = log_lines()
        for i in range(after, len(lines)):
            if rx.search(lines[i]):
                return lines[i], i + 1
        time.sleep(0.2)
    return None, len(log_lines())


def geometry(after=0, tag=None, timeout=30.0):
    pattern = r"geometry \{" if tag is None else rf'geometry \{{"tag": "{tag}"'
    line, _ = wait_for(pattern, after, timeout)
    return json.loads(line.split("geometry ", 1)[1]) if line else None


def last_geometry():
    found = [line for line in log_lines() if " geometry {" in line]
    return json.loads(found[-1].split("geometry ", 1)[1]) if found else None


def last_params():
    found = [line for line in log_lines() if line.startswith("[bokehkit] params ")]
    return json.loads(found[-1].split("params ", 1)[1]) if found else None


def click_and_read_params(rect, fx=0.5):
    """Click, then the parameters the docker logs for it: waited for, since a busy Krita
    took longer than a fixed half second to log them, and the old ones were read."""
    n = len(log_lines())
    click(rect, fx=fx)
    wait_for(r"^\[bokehkit\] params ", n, 15)
    time.sleep(0.3)  # one click may log twice (value, then the snap)
    return last_params()


def inside(rect, box):
    x, y, w, h = rect
    bx, by, bw, bh = box
    return bx <= x and by <= y and x + w <= bx + bw and y + h <= by + bh


def reveal(name):
    """Scroll the docker's settings (wheel over them) until control `name` is in view, as a
    user on a small screen does; its fresh rectangle."""
    for _ in range(40):
        g = last_geometry()
        if inside(g[name], g["viewport"]):
            return g[name]
        down = g[name][1] > g["viewport"][1]
        xdo("mousemove", "--sync", *centre(g["viewport"], 0.5, 0.5))
        xdo("click", "5" if down else "4")
        time.sleep(1.2)  # the docker logs its new geometry within a second
    return last_geometry()[name]


def screenshot(name):
    return grab(os.path.join(OUT, name))


def start_krita():
    """Krita with the docker shown, once the display takes connections; started again once
    if it exits before the docker is up (a display that went away under it)."""
    env = dict(os.environ, BOKEHKIT_KRITA_SHOW_DOCKER="1", BOKEHKIT_KRITA_TEST="1")
    for attempt in range(2):
        wait_for_display()
        with open(LOG, "w") as log:
            krita = subprocess.Popen(["krita", "--nosplash", "/job/in.png"], stdout=log,
                                     stderr=subprocess.STDOUT, env=env)  # fmt: skip
        time.sleep(5)
        if krita.poll() is None:
            return krita
        note("krita exited at start", code=krita.returncode, attempt=attempt + 1)
    return krita


def main():
    global LOG
    krita = start_krita()
    try:
        session(krita)
    except Exception:
        # Said in the report: the tests read it, and a bare traceback went unseen.
        report["error"] = traceback.format_exc()
        raise
    finally:
        krita.kill()
        krita.wait()
        time.sleep(3)
        report["engines_left"] = engines_left(os.environ["HOME"])
        write_report()
    # Krita again: the docker opens with the settings of the last Apply.
    LOG = os.path.join(OUT, "krita-2.log")
    krita = start_krita()
    try:
        shown = geometry(tag="ready", timeout=180)
        note("restarted", params=shown and last_params())
    finally:
        krita.kill()
        krita.wait()
        write_report()


def write_report():
    with open(os.path.join(OUT, "report.json"), "w") as f:
        json.dump(report, f, indent=1)


def largest_krita_window(timeout=60.0):
    """The id of Krita's largest visible window: waited for, since on a loaded machine the
    docker can log "ready" before the window manager lists the window."""
    deadline = time.monotonic() + timeout
    while True:
        sizes = []
        for wid in xdo("search", "--onlyvisible", "--class", "krita").split():
            m = re.search(r"Geometry: (\d+)x(\d+)", xdo("getwindowgeometry", wid))
            if m:
                sizes.append((int(m.group(1)) * int(m.group(2)), wid))
        if sizes or time.monotonic() > deadline:
            break
        time.sleep(1)
    if not sizes:
        raise RuntimeError("no visible Krita window to resize")
    return max(sizes)[1]


def session(krita):
    ready = geometry(tag="ready", timeout=180)
    if ready is None:
        note("krita did not show the docker")
        return
    note("ready", geometry=ready)
    # A laptop screen: the window as large as the screen, no larger (a window manager would
    # maximise it); Krita keeps its minimum size if it cannot shrink that far.
    main_window = largest_krita_window()
    report["main_window"] = main_window
    xdo("windowmove", main_window, 0, 0)
    xdo("windowsize", main_window, *SCREEN)
    # the docker logs its new geometry within a second of Krita's resize (slow when busy);
    # a window that cannot shrink that far keeps its own size: the test reads it
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and last_geometry()["window"][2:] != list(SCREEN):
        time.sleep(0.5)
    time.sleep(1)
    note("laptop-sized", geometry=last_geometry())
    # Settled: the docker has looked at the document and heard from the engine (its ping
    # imports the learned renderers: seconds on a busy machine). No render has run yet.
    wait_for(r"\] layers ", 0, 60)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and not last_geometry().get("notice"):
        time.sleep(0.5)
    note("settled", geometry=last_geometry(), rendered=any("] done" in x for x in log_lines()))
    time.sleep(4)  # the preview of the photo settles
    screenshot("docker-1366x768.png")

    # The "no depth" notice: one click adds a Blur layer to paint on.
    n = len(log_lines())
    if last_geometry().get("fixes", {}).get("paint_blur"):
        click(reveal("paint_blur_fix"))
    added, n = wait_for(r"added the Blur layer", n, 15)
    note("paint blur clicked", added=bool(added))

    # Paint a stroke on the canvas (Krita starts with the freehand brush): the preview
    # follows (it went stale before).
    time.sleep(2)
    g = last_geometry()
    canvas_x = max(40, g["docker"][0] - 260)
    canvas_y = g["window"][1] + 260
    n = len(log_lines())
    xdo("mousemove", "--sync", canvas_x, canvas_y)
    xdo("mousedown", "1")
    for i in range(1, 16):
        xdo("mousemove", "--sync", canvas_x + 8 * i, canvas_y + 4 * i)
        time.sleep(0.03)
    xdo("mouseup", "1")
    changed, n2 = wait_for(r"document changed: fresh preview", n, 15)
    shown, _ = wait_for(r"preview shown", n2, 60)
    note("stroke painted", refreshed=bool(changed), preview_shown=bool(shown))

    # Apply, then Cancel at once (the render engine is still starting): the buttons must
    # stay where they were.
    before = last_geometry()
    n = len(log_lines())
    click(before["apply"])
    click(before["cancel"])
    rendering, _ = wait_for(r"rendering “", n, 20)
    busy = geometry(after=n, tag="busy", timeout=10)
    outcome, _ = wait_for(r"\] (cancelled|done|error)", n, 120)
    note("apply then cancel", rendering=rendering, outcome=outcome,
         apply_before=before["apply"], cancel_before=before["cancel"],
         apply_busy=busy and busy["apply"], cancel_busy=busy and busy["cancel"])  # fmt: skip

    # Apply for real.
    n = len(log_lines())
    click(before["apply"])
    done, _ = wait_for(r"\] (done|error)", n, 180)
    note("apply", outcome=done)
    time.sleep(3)  # the watcher follows the new active layer (the result): re-edit

    # On the result: the aperture slider snaps to third stops; focal length to manual and
    # back to auto with the check box.
    slid = click_and_read_params(reveal("aperture_slider"), fx=0.62)
    manual = click_and_read_params(reveal("focal_auto"))
    auto = click_and_read_params(reveal("focal_auto"))
    note(
        "controls",
        aperture=slid and slid["aperture"],
        focal_manual=manual and manual["focal_length"],
        focal_auto=auto and auto["focal_length"],
    )

    # Apply on the result: it renders again from the photo.
    n = len(log_lines())
    click(last_geometry()["apply"])
    reedit, _ = wait_for(r"\] rendering “", n, 20)
    done, _ = wait_for(r"\] (done|error)", n, 180)
    layers_line, _ = wait_for(r"\] layers ", n, 15)
    note("re-edit", rendering=reedit, outcome=done,
         layers=layers_line and json.loads(layers_line.split("layers ", 1)[1]))  # fmt: skip
    screenshot("docker-after-reedit.png")

    # Ctrl+Z: one step takes the re-edit back.
    n = len(log_lines())
    xdo("windowfocus", "--sync", report["main_window"])
    xdo("key", "--clearmodifiers", "ctrl+z")
    undone, _ = wait_for(r"\] layers ", n, 15)
    note("undo", layers=undone and json.loads(undone.split("layers ", 1)[1]))


if __name__ == "__main__":
    main()
