"""``fleet.trust``: record a host's SSH host keys in known_hosts once a person has seen them.

Two engine steps: ``offered_keys`` (read-only: ``ssh-keyscan`` the host and journal the keys
and fingerprints it offers) and ``ensure_trusted`` (check: compare with known_hosts, nothing
to do when every offered key is recorded, refused when a recorded key of the same type
differs; apply: ask, then append; verify: known_hosts now records every offered key).

Approval is asked in every environment, not only in production (the engine's
``requires_approval``): a key trusted by mistake lets a man-in-the-middle into every later
run against that host. The engine's gate cannot say that, so ``ensure_trusted`` asks itself,
right before it writes: ``--yes`` or a chat approval, else a y/N question on a terminal;
anything else is no. Heavy imports stay inside functions: the CLI imports this module to
list tasks.
"""

from __future__ import annotations

import sys

from aep_ops.engine.context import RunContext
from aep_ops.engine.runbook import runbook
from aep_ops.engine.step import Plan, Step
from aep_ops.base.errors import ApprovalRequired, VerificationFailed
from aep_ops.base.log import audit


def _where(ctx: RunContext) -> tuple[str, int, str]:
    return ctx.params["address"], ctx.params["ssh_port"], ctx.params["known_hosts_file"]


def _offered(ctx: RunContext) -> list:
    from aep_ops.fleet.hostkeys import ScannedKey

    return [ScannedKey.from_json(k) for k in ctx.output("offered_keys", "keys")]


def _approved(ctx: RunContext, question: str, *, shown: str) -> bool:
    """``--yes`` or a chat approval, else "y" to ``question`` on a terminal. ``shown`` (the
    fingerprints) goes to stdout in any case, so the output says what was not approved; off a
    terminal the answer is no (never trust silently). A refusal ends the run with exit 4 before
    any result is printed, so stdout never mixes the fingerprints with --json."""
    if ctx.options.yes or ctx.options.approved_by:
        return True
    print(shown, flush=True)
    if not sys.stdin.isatty():
        return False
    try:
        return input(question).strip().lower() in ("y", "yes")
    except EOFError:
        return False


class OfferedKeys(Step):
    id = "offered_keys"
    title = "Read the SSH host keys the host offers"

    def check(self, ctx):
        from aep_ops.fleet.hostkeys import scan_host_keys

        address, port, _ = _where(ctx)
        keys = scan_host_keys(address, port)
        return Plan.unchanged(f"{address}:{port} offers " + ", ".join(f"{k.key_type} {k.fingerprint}" for k in keys),
                              address=address, port=port, keys=[k.to_json() for k in keys])


class EnsureTrusted(Step):
    id = "ensure_trusted"
    title = "Record the offered keys in known_hosts (after approval)"

    def check(self, ctx):
        from aep_ops.fleet.hostkeys import new_keys, recorded_keys

        address, port, path = _where(ctx)
        missing = new_keys(_offered(ctx), recorded_keys(path, address, port), known_hosts=path,
                           address=address, port=port)
        if not missing:
            return Plan.unchanged(f"already trusted in {path}; nothing to do")
        return Plan.change(f"add {len(missing)} key(s) for {address}:{port} to {path}: "
                           + ", ".join(k.fingerprint for k in missing), missing=[k.to_json() for k in missing])

    def apply(self, ctx, plan):
        from aep_ops.fleet.hostkeys import ScannedKey, append_known_hosts, describe_offers

        address, port, path = _where(ctx)
        missing = [ScannedKey.from_json(k) for k in plan.details["missing"]]
        target = f"{address}:{port}"
        if not _approved(ctx, f"Add {len(missing)} key(s) for {target} to {path}? [y/N] ",
                         shown=describe_offers(address, port, _offered(ctx))):
            audit(ctx.state_dir, "fleet.trust", target=target, args={"known_hosts": path},
                  result="refused: not confirmed")
            raise ApprovalRequired("nothing recorded: check the fingerprint(s) above out of band (on the host: "
                                   "`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`), then rerun with --yes")
        append_known_hosts(path, missing)
        fingerprints = [k.fingerprint for k in missing]
        audit(ctx.state_dir, "fleet.trust", target=target,
              args={"known_hosts": path, "fingerprints": ",".join(fingerprints)}, result="ok")
        return {"known_hosts": path, "added": fingerprints}

    def verify(self, ctx, outputs):
        from aep_ops.fleet.hostkeys import recorded_keys

        address, port, path = _where(ctx)
        recorded = set(recorded_keys(path, address, port))
        absent = [k.fingerprint for k in _offered(ctx) if (k.key_type, k.blob) not in recorded]
        if absent:
            raise VerificationFailed(f"{path} does not record {', '.join(absent)} for {address}:{port} after the"
                                     " append; check the file (its permissions, a concurrent edit) and run again")


@runbook("fleet.trust", steps=[OfferedKeys, EnsureTrusted],
         summary="Show a host's SSH key fingerprints and record them in known_hosts (after --yes or a y/N prompt)",
         positional=("host",), bounds={"port": (0, 65535)},
         help={"host": "inventory name or [user@]address[:port]", "port": "SSH port (default 22 or the host's)",
               "known_hosts": "known_hosts file to append to (default: environments.ENV.ssh.known_hosts)",
               "env": "environment whose ssh.known_hosts is appended to (default: local)",
               "yes": "add the keys without asking (in every environment, not only production)"})
def trust(ctx: RunContext, *, host: str = "", port: int = 0, known_hosts: str | None = None) -> None:
    """Which host and which file, before anything is read or written."""
    from aep_ops.fleet.hostkeys import trust_target
    from aep_ops.base.errors import refuse_blank
    from aep_ops.fleet.sshsetup import KNOWN_HOSTS_BLANK

    if not ctx.options.resume:
        refuse_blank("--known-hosts", known_hosts, KNOWN_HOSTS_BLANK)

    address, ssh_port, path = trust_target(ctx.settings, host, port, known_hosts)
    ctx.params.update(address=address, ssh_port=ssh_port, known_hosts_file=path)
