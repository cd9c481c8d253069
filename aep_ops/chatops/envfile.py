"""``--env-file PATH``: KEY=VALUE lines (systemd's EnvironmentFile format, ``export`` allowed)
read into the environment before the configuration, so ``env:SLACK_SIGNING_SECRET`` resolves.
The file holds secrets: one readable by other users is refused, and a bad line is named by
its number only (its text may be a secret)."""

from __future__ import annotations

import os
import re
import stat

from aep_ops.base.errors import UsageError, refuse_blank

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def load_env_file(path: str) -> list[str]:
    """Set the file's variables; returns their names (never their values)."""
    refuse_blank("--env-file", path, "name the file that holds SLACK_SIGNING_SECRET and SLACK_BOT_TOKEN")
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise UsageError(f"--env-file {path}: not a regular file")
        if info.st_mode & stat.S_IROTH:
            raise UsageError(f"--env-file {path}: other users can read it and it holds secrets; chmod 600 {path}")
        with open(path, encoding="utf-8") as fh:
            text = fh.read(1 << 20)
    except OSError as exc:
        raise UsageError(f"--env-file {path}: cannot read it ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise UsageError(f"--env-file {path}: not UTF-8 text") from None
    names = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        key = key.strip()
        if not sep or not NAME.fullmatch(key):
            raise UsageError(f"--env-file {path}: line {number} is not NAME=VALUE")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        os.environ[key] = value
        names.append(key)
    return names
