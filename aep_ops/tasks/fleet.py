"""``fleet.run`` and ``fleet.facts``: the CLI front door of aep_ops.fleet.commands and
aep_ops.fleet.facts (``fleet.trust`` is a runbook: aep_ops.fleet.runbooks).

The command for ``fleet.run`` is what follows ``--`` on the command line. invoke parses
that remainder (``Program.core[0].remainder``: the words after ``--`` joined by spaces,
as ssh joins its own) but does not hand it to tasks, and ``inv`` uses invoke's stock
Program; so the task reads it from ``sys.argv`` the same way.
"""

from __future__ import annotations

import sys

from invoke import task
from invoke.exceptions import Exit

from aep_ops.fleet.defaults import DEFAULT_PARALLEL, DEFAULT_TIMEOUT
from aep_ops.fleet.sshsetup import ssh_file_flags
from aep_ops.base.numbers import number
from aep_ops.tasks.frontdoor import EXIT_FAILED, front_door, load_settings, print_json

_COMMON_HELP = {
    "env": "environment (default: local)",
    "role": "only hosts with this role",
    "hosts": "comma-separated hosts instead of the inventory: names or [user@]address[:port]",
    "identity": "SSH private key (default: environments.ENV.ssh.identity)",
    "known-hosts": "known_hosts file to check host keys against (default: environments.ENV.ssh.known_hosts)",
    "parallel": f"at most this many hosts at a time (default: inventory.parallel or {DEFAULT_PARALLEL})",
    "timeout": "seconds for the whole fan-out; hosts not done by then are unreachable"
               f" (default {DEFAULT_TIMEOUT:g})",
    "json": "print JSON",
    "set": "override a configuration value, KEY=VALUE (repeatable)",
}


@task(help={**_COMMON_HELP, "yes": "approve running on a production environment",
            "via": "ssh (default) or ssm (SSM Run Command; hosts need an instance_id)",
            "command": "the shell command, instead of giving it after --",
            "output": "print each host's output under its line"},
      iterable=["set"], auto_shortflags=False)
def run(c, env=None, role=None, hosts=None, identity=None, known_hosts=None, parallel=None, timeout=None,
        yes=False, via="ssh", command=None, output=False, json=False, set=None):
    """Run a shell command on every host: `inv fleet.run --env staging --role api -- uptime`."""
    with front_door():
        from aep_ops.fleet.commands import run_command
        from aep_ops.fleet.inventory import hosts_flag, role_flag

        ssh_file_flags(identity, known_hosts)
        settings = load_settings(env, set or [])
        result = run_command(
            settings, command if command is not None else remainder(), role=role_flag(role), hosts=hosts_flag(hosts),
            identity=identity, known_hosts=known_hosts, parallel=_parallel(parallel), timeout=_timeout(timeout),
            via=via, yes=yes)
        if json:
            print_json(result.to_json())
        else:
            _print_run(result, output)
        if not result.ok:
            raise Exit(code=EXIT_FAILED)


@task(help=_COMMON_HELP, iterable=["set"], auto_shortflags=False)
def facts(c, env=None, role=None, hosts=None, identity=None, known_hosts=None, parallel=None, timeout=None,
          json=False, set=None):
    """Read-only facts per host: OS, kernel, uptime, pending and security updates, reboot required."""
    with front_door():
        from aep_ops.fleet.facts import gather_facts
        from aep_ops.fleet.inventory import hosts_flag, role_flag

        ssh_file_flags(identity, known_hosts)
        settings = load_settings(env, set or [])
        rows = gather_facts(settings, role=role_flag(role), hosts=hosts_flag(hosts), identity=identity,
                            known_hosts=known_hosts, parallel=_parallel(parallel), timeout=_timeout(timeout))
        if json:
            print_json([r.to_json() for r in rows])
        else:
            _print_facts(rows)
        if any(r.status != "ok" for r in rows):
            raise Exit(code=EXIT_FAILED)


# -- helpers ----------------------------------------------------------------------------------


def remainder(argv: list[str] | None = None) -> str:
    """The words after the first ``--``, joined by spaces (invoke's ParseResult.remainder)."""
    argv = sys.argv if argv is None else argv
    return " ".join(argv[argv.index("--") + 1:]) if "--" in argv else ""


def _parallel(value: object) -> int | None:
    return number("--parallel", value, int, what="a whole number", minimum=1, maximum=256)


def _timeout(value: object) -> float:
    return number("--timeout", value, float, default=DEFAULT_TIMEOUT, what="a number of seconds", above=0,
                  maximum=86400)



def _print_run(result, show_output: bool) -> None:
    width = max((len(h.name) for h in result.hosts), default=4)
    for host, outcome in result.pairs():
        r = outcome.result
        if outcome.status == "ok":
            detail = f"{r.duration:.2f}s"
        elif outcome.status == "failed":
            tail = " | ".join(r.stderr_tail(3).splitlines())
            detail = f"exit {r.exit_status}" + (f": {tail[:300]}" if tail else "")
        else:
            detail = outcome.error or "unreachable"
        print(f"{outcome.status:<11} {host.name:<{width}}  {detail}")
        if show_output and r is not None:
            for line in (r.stdout + r.stderr).rstrip("\n").splitlines():
                print(f"    {line}")
    print(result.summary())


def _print_facts(rows) -> None:
    header = ("HOST", "OS", "KERNEL", "UPTIME", "UPDATES", "SECURITY", "REBOOT")
    table = [header]
    problems = []
    for f in rows:
        if f.status == "unreachable":
            problems.append(f"{f.host.name}: {f.status}: {f.error}")
            table.append((f.host.name, "?", "?", "?", "?", "?", "?"))
            continue
        if f.error:
            problems.append(f"{f.host.name}: {f.error}")
        table.append((f.host.name, f.os or "?", f.kernel or "?", _duration(f.uptime_seconds), _n(f.updates),
                      _n(f.security_updates), {True: "yes", False: "no"}.get(f.reboot_required, "?")))
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())
    for line in problems:
        print(line)


def _n(value: int | None) -> str:
    return "?" if value is None else str(value)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(seconds)
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    return f"{days}d {hours}h" if days else f"{hours}h {rest // 60}m"
