"""Where the engine is: the command that starts `bokehkit serve`.

From the environment variable BOKEHKIT_ENGINE (a JSON list or a shell-like string), else
the installer's config file, ``user_config_dir("bokehkit")/engine.json`` with
``{"command": [...]}``. The folder is computed as platformdirs does, without it, because
the plug-ins are standard library only.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
from collections.abc import Mapping

ENV_VAR = "BOKEHKIT_ENGINE"
APP = "bokehkit"


class EngineNotConfigured(RuntimeError):
    """Neither BOKEHKIT_ENGINE nor the config file says how to start the engine."""


def home_dir(platform: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """The user's home folder: USERPROFILE (Windows) or HOME, else what Python finds."""
    platform = platform or sys.platform
    env = os.environ if env is None else env
    if platform.startswith("win"):
        home = env.get("USERPROFILE") or env.get("HOME")
    else:
        home = env.get("HOME")
    return home or os.path.expanduser("~")


def xdg_dir(
    var: str, default: str, platform: str | None = None, env: Mapping[str, str] | None = None
) -> str:
    """An XDG base folder: the variable `var` when it holds an absolute path, else `default`
    under the home folder. A relative value is ignored, as the XDG Base Directory
    specification says (the installer, which writes the engine's config, and the plug-ins,
    which read it, must agree even when the host starts from another working folder)."""
    env = os.environ if env is None else env
    value = env.get(var, "").strip()
    if value and os.path.isabs(value):
        return value
    return os.path.join(home_dir(platform, env), default)


def _local_appdata(platform: str | None, env: Mapping[str, str]) -> str:
    return env.get("LOCALAPPDATA") or os.path.join(home_dir(platform, env), "AppData", "Local")


def user_config_dir(platform: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """platformdirs.user_config_dir("bokehkit") for Linux/BSD, Windows and macOS: the one
    place the engine's config (engine.json) and the plug-ins' settings live. The installer
    (plugin/bokehkit_plugin/install.py) writes there through this same function."""
    platform = platform or sys.platform
    env = os.environ if env is None else env
    if platform.startswith("win"):
        # platformdirs: %LOCALAPPDATA%\<appauthor>\<appname>, appauthor defaulting to appname
        return os.path.join(_local_appdata(platform, env), APP, APP)
    if platform == "darwin":
        return os.path.join(home_dir(platform, env), "Library", "Application Support", APP)
    return os.path.join(xdg_dir("XDG_CONFIG_HOME", ".config", platform, env), APP)


def user_data_dir(platform: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """platformdirs.user_data_dir("bokehkit"): the model store and the engine venv live
    under it."""
    platform = platform or sys.platform
    env = os.environ if env is None else env
    if platform.startswith("win"):
        return os.path.join(_local_appdata(platform, env), APP, APP)
    if platform == "darwin":
        return os.path.join(home_dir(platform, env), "Library", "Application Support", APP)
    return os.path.join(xdg_dir("XDG_DATA_HOME", ".local/share", platform, env), APP)


def config_path(platform: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """The engine's config file, engine.json, which the installer writes."""
    return os.path.join(user_config_dir(platform, env), "engine.json")


def parse_command(text: str) -> list[str]:
    """A JSON list, or a shell-like string."""
    text = text.strip()
    if text.startswith("["):
        try:
            command = json.loads(text)
        except ValueError as exc:
            raise EngineNotConfigured(f"{ENV_VAR} is not a valid JSON list: {exc}") from None
    else:
        command = shlex.split(text, posix=os.name != "nt")
    if not command or not all(isinstance(part, str) and part for part in command):
        raise EngineNotConfigured(f"{ENV_VAR} must name a command, got {text!r}")
    return command


def engine_command(env: dict | None = None, platform: str | None = None) -> list[str]:
    """The command that starts the engine (without `serve --stdio`)."""
    env = os.environ if env is None else env
    if env.get(ENV_VAR, "").strip():
        return parse_command(env[ENV_VAR])
    path = config_path(platform, env)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise EngineNotConfigured(
            "bokehkit engine is not set up: run `bokehkit install-plugins` in the engine's "
            f"environment (it writes {path}), or set {ENV_VAR} to the engine command"
        ) from None
    except (OSError, ValueError) as exc:
        raise EngineNotConfigured(
            f"cannot read the engine config {path} ({exc}); run `bokehkit install-plugins` "
            "again to rewrite it"
        ) from None
    command = data.get("command") if isinstance(data, dict) else None
    if (
        not isinstance(command, list)
        or not command
        or not all(isinstance(c, str) and c for c in command)
    ):
        raise EngineNotConfigured(
            f'{path} has no valid "command" list; run `bokehkit install-plugins` again'
        )
    return command


def remote_engine(env: dict | None = None, platform: str | None = None) -> dict | None:
    """The remote engine the installer wrote (`install-plugins --remote`): {"address",
    "token_file", "fingerprint"}, or None for a local engine. $BOKEHKIT_ENGINE (a local
    command) wins over it."""
    env = os.environ if env is None else env
    if env.get(ENV_VAR, "").strip():
        return None
    try:
        with open(config_path(platform, env), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    remote = data.get("remote") if isinstance(data, dict) else None
    keys = ("address", "token_file", "fingerprint")
    if not isinstance(remote, dict) or not all(isinstance(remote.get(k), str) for k in keys):
        return None
    return {k: remote[k] for k in keys}
