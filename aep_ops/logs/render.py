"""The logrotate file of one host, rendered from its role's log sources.

Choices an on-call engineer would make, written once here:
- ``dateext`` with ``-%Y%m%d-%s``: a rotated name never collides within a day (the default
  ``-%Y%m%d`` blocks a second rotation the same day, silently: kops#5378).
- ``create`` + a postrotate that signals the process and **waits** until it has reopened its
  file (no descriptor left on the rotated one, one on the new one), so compression never races
  a late write. ``copytruncate`` only where configured: it loses the lines written between its
  copy and its truncate (logrotate's man page; rsyslog#2640), and logs.rotate reports that window.
- The postrotate indexes the rotated file (line count, first and last line) for logs.ship, so
  shipping never decompresses a file to count it.
"""

from __future__ import annotations

import shlex

from aep_ops.logs.settings import Source

DATEFORMAT = "-%Y%m%d-%s"
INDEX_DIR = ".aep-ops-index"
HEADER = "# Written by aep-ops logs.rotate for environment {env}, host {host}: do not edit, it is rewritten.\n"

_WAIT = """\
pidfile={pidfile}
pid=$(cat -- "$pidfile" 2>/dev/null) || {{ echo "aep-ops: cannot read $pidfile: $1 was not reopened" >&2; exit 1; }}
case $pid in ''|*[!0-9]*) echo "aep-ops: $pidfile holds no pid: $1 was not reopened" >&2; exit 1;; esac
if kill -0 "$pid" 2>/dev/null; then
    kill -{signal} "$pid" || exit 1
    n=0
    while :; do
        old=0; new=0
        for fd in /proc/"$pid"/fd/*; do
            t=$(readlink -- "$fd") || continue
            [ "$t" = "$2" ] && old=1
            [ "$t" = "$1" ] && new=1
        done
        [ $old = 0 ] && [ $new = 1 ] && break
        n=$((n+1))
        if [ $n -gt {polls} ]; then echo "aep-ops: process $pid did not reopen $1 within {timeout} s" >&2; exit 1; fi
        sleep 0.05
    done
fi
"""
_INDEX = """\
d=$(dirname -- "$2")/{index_dir}; b=$(basename -- "$2")
mkdir -p -- "$d" && chmod 0700 -- "$d" &&
{{ wc -l < "$2"; head -n 1 -- "$2" | cut -c1-4096; tail -n 1 -- "$2" | cut -c1-4096; }} > "$d/$b.tmp" &&
mv -f -- "$d/$b.tmp" "$d/$b.idx"
"""


def render(env: str, host: str, chosen: list[Source], *, reopen_timeout: int = 10) -> str:
    blocks = [HEADER.format(env=env, host=host)]
    for source in chosen:
        blocks.append(_block(source, host, reopen_timeout))
    return "\n".join(blocks)


def _block(source: Source, host: str, reopen_timeout: int) -> str:
    paths = " ".join(f'"{p}"' for p in source.paths_on(host))
    lines = [f"# source {source.name} ({source.kind})", paths + " {"]
    if source.size and source.schedule:
        lines += [f"    {source.schedule}", f"    maxsize {source.size}"]
    elif source.size:
        lines += [f"    size {source.size}"]
    else:
        lines += [f"    {source.schedule or 'daily'}"]
    lines += [f"    rotate {source.keep}", "    missingok", "    notifempty", "    dateext",
              f"    dateformat {DATEFORMAT}", "    nomail", "    nosharedscripts"]
    if source.compress:
        lines += ["    compress"] + (["    delaycompress"] if source.delay_compress else [])
    else:
        lines += ["    nocompress"]
    if source.su:
        lines += [f"    su {source.su}"]
    lines += ["    copytruncate"] if source.method == "copytruncate" else [f"    create {source.create_mode}"]
    lines += ["    postrotate"] + ["        " + line for line in _postrotate(source, host, reopen_timeout).splitlines()]
    lines += ["    endscript", "}"]
    return "\n".join(lines) + "\n"


def _postrotate(source: Source, host: str, reopen_timeout: int) -> str:
    script = ""
    if source.method == "create" and source.reopen_command:
        script += shlex.join(a.replace("{host}", host) for a in source.reopen_command) + " || exit 1\n"
    elif source.method == "create" and source.signal and source.pidfile:
        script += _WAIT.format(pidfile=shlex.quote(source.pidfile.replace("{host}", host)), signal=source.signal,
                               polls=reopen_timeout * 20, timeout=reopen_timeout)
    return script + _INDEX.format(index_dir=INDEX_DIR)
