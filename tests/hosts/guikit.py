"""What the mouse sessions (krita_mouse.py, gimp_mouse.py) share, inside the root: xdotool,
screenshots, and the engines a killed editor may have left behind (found in /proc: the
roots have no pgrep everywhere)."""

import os
import subprocess
import time


def xdo(*args):
    return subprocess.run(["xdotool", *map(str, args)], capture_output=True, text=True).stdout


def wait_for_display(timeout=60.0):
    """Until the X server takes connections. Under load a program started at once could
    find none ("could not connect to display :99") and exit, and the session then waited
    for a window that would never come."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        p = subprocess.run(["xdotool", "getdisplaygeometry"], capture_output=True)
        if p.returncode == 0:
            return True
        time.sleep(0.5)
    return False


def centre(rect, fx=0.5, fy=0.5):
    x, y, w, h = rect
    return int(x + fx * w), int(y + fy * h)


def click(rect, fx=0.5, fy=0.5):
    """A left click at a point of a screen rectangle [x, y, w, h], as a user aims."""
    xdo("mousemove", "--sync", *centre(rect, fx, fy))
    time.sleep(0.15)
    xdo("click", "1")
    time.sleep(0.35)


def screenshot(path, trim=False):
    """The whole X screen as PNG; `trim`: cropped to the windows (no window manager)."""
    crop = " | convert - -trim +repage png:-" if trim else ""
    subprocess.run(f"import -window root png:-{crop} > '{path}'", shell=True, check=False)
    return path


def engines_left(home):
    """PIDs of `bokehkit serve` processes started with this HOME (ours) still running."""
    left = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
            if b"serve" not in cmd or not any(b"bokehkit" in part for part in cmd):
                continue
            with open(f"/proc/{pid}/environ", "rb") as f:
                if f"HOME={home}".encode() in f.read().split(b"\0"):
                    left.append(int(pid))
        except OSError:
            pass
    return left
