"""One host's patch as a state machine: check -> drain -> upgrade -> reboot -> health -> return.

Why a state machine with a file of its own: the engine's steps are fixed per runbook, but a
rollout runs this sequence once per host. Every transition is written atomically to the
rollout's state file (``patch_state.RolloutState``) before the next one starts, so a
resumed run continues each host exactly where it stopped, and ``patch.status`` shows where
every host is. Each transition checks before it acts (pending packages, registration, the
reboot marker), so repeating one after a crash is safe. A failure leaves the host where it
is (drained, if it got that far) and records the step that failed. ``HostRollout`` holds what
every rollout shares (running the transitions, drain, health gate, return); ``HostPatch`` adds
check, upgrade and reboot, and ``service.restart`` adds its restart (aep_ops/service/host.py).
"""

from __future__ import annotations

import shlex
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Sequence

from aep_ops.base.errors import AepError, CommandTimeout, ExecutionError, HostKeyError, HostUnreachable, StepFailed
from aep_ops.base.log import get_logger
from aep_ops.patch.state import DONE, FAILED, PENDING, UP_TO_DATE

if TYPE_CHECKING:  # pragma: no cover
    from aep_ops.executors.ssh import SshExecutor
    from aep_ops.fleet.inventory import Host
    from aep_ops.fleet.loadbalancer import LoadBalancer
    from aep_ops.patch.state import RolloutState

log = get_logger(__name__)

STEPS = ("check", "drain", "upgrade", "reboot", "health", "return")
AFTER = {"check": "checked", "drain": "drained", "upgrade": "upgraded", "reboot": "rebooted",
         "health": "healthy", "return": DONE}

DEFAULT_PENDING = ("sh", "-c", "apt-get -qq update && out=$(apt-get -s -o Debug::NoLocking=1 dist-upgrade)"
                               " && printf '%s\\n' \"$out\" | awk '/^Inst /{print $2}'")
# `dpkg --configure -a` first: it finishes an upgrade a lost machine or an older run interrupted (apt-get
# refuses to start until that is done); it does nothing otherwise.
DEFAULT_UPGRADE = ("sh", "-c", "dpkg --force-confdef --force-confold --configure -a && exec apt-get -y"
                               " -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold"
                               " -o DPkg::Lock::Timeout=300 dist-upgrade")
DEFAULT_UPGRADE_LOG = "/var/tmp/aep-ops-upgrade-{host}.log"
# Runs the upgrade so that it finishes even if aep-ops goes away (killed, connection lost, deadline):
# HUP and PIPE ignored (inherited by apt and dpkg), output appended to a log on the host, not to the
# SSH channel. A package manager killed mid-way leaves dpkg half-configured. Prints this attempt's
# last 40 lines and exits with the upgrade's status.
DETACHED = ('log=$1; shift; trap "" HUP PIPE; start=0; [ -f "$log" ] && start=$(wc -c < "$log"); '
            'printf "== %s aep-ops: %s\\n" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >> "$log" || exit 1; '
            '"$@" >> "$log" 2>&1 < /dev/null; rc=$?; '
            'tail -c +$((start + 1)) -- "$log" | tail -n 40; printf "== exit %s\\n" "$rc" >> "$log"; exit $rc')
DEFAULT_REBOOT = ("shutdown", "-r", "now")
REBOOT_MARKER = "/var/run/reboot-required"  # Debian/Ubuntu: written by packages, gone after a boot (tmpfs)
BOOT_PROBE = ("sh", "-c", "cat /proc/sys/kernel/random/boot_id;"
                         f" if test -e {REBOOT_MARKER}; then echo reboot-required; fi")
PENDING_TIMEOUT = 600
UPGRADE_TIMEOUT = 3600
PROBE_TIMEOUT = 30


@dataclass(frozen=True)
class PatchConfig:
    """``patching.*`` of the environment, with defaults filled in."""

    pending_command: tuple[str, ...] = DEFAULT_PENDING
    upgrade_command: tuple[str, ...] = DEFAULT_UPGRADE
    reboot_command: tuple[str, ...] = DEFAULT_REBOOT
    health_checks: int = 3
    health_timeout: float = 300
    reboot_timeout: float = 600
    drain_timeout: float = 300
    upgrade_log: str = DEFAULT_UPGRADE_LOG

    @classmethod
    def from_settings(cls, settings: Any) -> PatchConfig:
        cfg = settings.env.get("patching") or {}
        out = cls()
        for key in ("pending_command", "upgrade_command", "reboot_command"):
            if cfg.get(key):
                out = _replace(out, **{key: tuple(cfg[key])})
        for key in ("health_checks", "health_timeout", "reboot_timeout", "drain_timeout", "upgrade_log"):
            if cfg.get(key) is not None:
                out = _replace(out, **{key: cfg[key]})
        return out


def _replace(cfg: PatchConfig, **changes: Any) -> PatchConfig:
    from dataclasses import replace

    return replace(cfg, **changes)


# -- probes (read-only) --------------------------------------------------------------------------


def detached(argv: Sequence[str], log_path: str) -> tuple[str, ...]:
    """``argv`` wrapped by DETACHED, its output going to ``log_path`` on the host."""
    return ("sh", "-c", DETACHED, "aep-ops-upgrade", log_path, *argv)


def pending_packages(executor: SshExecutor, cfg: PatchConfig) -> list[str]:
    """Packages the configured pending_command lists (first word of each line); [] = up to date."""
    result = executor.run(cfg.pending_command, timeout=PENDING_TIMEOUT, user="root")
    if not result.ok:
        raise StepFailed(f"pending-updates check failed: {result.describe()} (patching.pending_command)")
    return [line.split()[0] for line in result.stdout.splitlines() if line.strip()]


def health_probe(url: str, timeout: float) -> tuple[bool, str]:
    """One GET of the health URL, straight to the host (never through a proxy): (ok, what)."""
    import http.client
    import urllib.error
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            return response.status == 200, f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}"
    except urllib.error.URLError as exc:
        return False, f"no answer ({exc.reason})"
    except (OSError, http.client.HTTPException) as exc:
        return False, f"no answer ({type(exc).__name__}: {exc})"


def wait_healthy(url: str, *, checks: int, timeout: float) -> None:
    """``checks`` consecutive 200s before the deadline, or StepFailed naming the last answer."""
    interval = min(5.0, max(0.2, timeout / 60))
    deadline = time.monotonic() + timeout
    streak, last = 0, "no answer yet"
    while True:
        ok, last = health_probe(url, max(0.5, min(5.0, deadline - time.monotonic())))
        streak = streak + 1 if ok else 0
        if streak >= checks:
            return
        if time.monotonic() + interval > deadline:
            raise StepFailed(f"{url} did not answer 200 {checks} times in a row within {timeout:g}s"
                             f" (last: {last}); the host stays out of service")
        time.sleep(interval)


# -- the state machine ---------------------------------------------------------------------------


class HostRollout:
    """Drive one host from its recorded state to done (or up to date), or failed, through
    ``steps`` (a method ``_<step>`` each). The drain, health and return transitions are shared
    by every rollout (``patch.rolling``, ``service.restart``); a subclass adds its own steps.
    ``cfg`` needs ``drain_timeout``, ``health_checks`` and ``health_timeout``."""

    steps: tuple[str, ...] = ()
    after: dict[str, str] = {}  # step -> the state it leaves the host in
    again: tuple[str, ...] = ()  # states after which the first step is taken again (a read-only check)
    event = "rollout.host"

    def __init__(self, host: Host, *, state: RolloutState, cfg: Any, lb: LoadBalancer,
                 connect: Callable[[], SshExecutor], audit: Callable[..., None],
                 progress: Callable[[str], None]) -> None:
        self.host, self.state, self.cfg, self.lb = host, state, cfg, lb
        self._connect, self._audit, self._progress = connect, audit, progress
        self._executor: SshExecutor | None = None

    @property
    def ex(self) -> SshExecutor:
        if self._executor is None:
            self._executor = self._connect()
        return self._executor

    def run(self) -> str:
        """Run the remaining transitions; return the host's final state."""
        entry = self.state.host(self.host.name)
        if entry["state"] in (DONE, UP_TO_DATE):
            return entry["state"]
        start = next_step(entry, self.steps, self.after, self.again)
        try:
            for step in self.steps[self.steps.index(start):]:
                try:
                    outcome = getattr(self, f"_{step}")()
                except Exception as exc:  # one host's failure must not take the batch down
                    message = str(exc) if isinstance(exc, AepError) else f"{type(exc).__name__}: {exc}"
                    if not isinstance(exc, AepError):
                        log.exception(f"{self.event}.crash", target=self.host.name, step=step)
                    self.state.fail(self.host.name, step, message)
                    self._audit(self.host, step, f"failed: {message}")
                    self._progress(f"{self.host.name}: FAILED at {step}: {message}")
                    return FAILED
                if outcome == UP_TO_DATE:
                    return UP_TO_DATE
            return DONE
        finally:
            if self._executor is not None:
                self._executor.close()

    def _done(self, step: str, **info: Any) -> None:
        self.state.transition(self.host.name, self.after[step], **info)
        log.info(f"{self.event}.transition", target=self.host.name, step=step, state=self.after[step])
        self._progress(f"{self.host.name}: {self.after[step]}")

    def _drain(self) -> None:
        record = self.state.host(self.host.name).get("lb")
        if not record:  # saved before acting: a resumed run returns the host exactly there
            record = self.lb.registration(self.host)
            self.state.update(self.host.name, lb=record)
        self.lb.drain(self.host, record, self.cfg.drain_timeout)
        self._audit(self.host, "drain", "ok", lb=self.lb.kind)
        self._done("drain")

    def _health(self) -> None:
        if not self.host.health_url:
            self._done("health", health="no health_url: SSH reachability only")
            return
        wait_healthy(self.host.health_url, checks=self.cfg.health_checks, timeout=self.cfg.health_timeout)
        self._done("health", health=f"{self.cfg.health_checks} x HTTP 200")

    def _return(self) -> None:
        record = self.state.host(self.host.name).get("lb") or {"kind": self.lb.kind}
        self.lb.restore(self.host, record, self.cfg.health_timeout)
        self._audit(self.host, "return", "ok", lb=self.lb.kind)
        self._done("return")


class HostPatch(HostRollout):
    """check -> drain -> upgrade -> reboot -> health -> return."""

    steps, after, again, event = STEPS, AFTER, (AFTER["check"],), "patch.host"

    def __init__(self, host: Host, *, cfg: PatchConfig, **kwargs: Any) -> None:
        super().__init__(host, cfg=cfg, **kwargs)
        self._checked: list[str] | None = None  # pending packages seen by this attempt's check

    def _check(self) -> str | None:
        packages = pending_packages(self.ex, self.cfg)
        if not packages and not self.state.host(self.host.name).get("lb"):
            self.state.transition(self.host.name, UP_TO_DATE, packages=[])
            self._progress(f"{self.host.name}: up to date, nothing to do")
            return UP_TO_DATE
        self._checked = packages
        self._done("check", packages=packages)  # (pending, or drained by us in an earlier attempt)
        return None

    def _upgrade(self) -> None:
        # Checked just before the drain in this attempt; a resumed host is checked again here.
        before = self._checked if self._checked is not None else pending_packages(self.ex, self.cfg)
        if not before:
            self._done("upgrade", upgraded=[])
            return
        log_path = self.cfg.upgrade_log.replace("{host}", self.host.name)
        result = self.ex.run(detached(self.cfg.upgrade_command, log_path), timeout=UPGRADE_TIMEOUT, user="root",
                             env={"DEBIAN_FRONTEND": "noninteractive"})
        self._audit(self.host, "upgrade", "ok" if result.ok else f"exit {result.exit_status}", packages=len(before))
        if not result.ok:
            last = ((result.stdout.strip() or result.stderr.strip()).splitlines() or [""])[-1]
            raise StepFailed(f"upgrade failed: {result.target}: `{shlex.join(self.cfg.upgrade_command)}` exited"
                             f" {result.exit_status}: {last} (patching.upgrade_command; output in {log_path}"
                             " on the host)")
        still = pending_packages(self.ex, self.cfg)
        if still:
            raise StepFailed(f"still pending after the upgrade: {', '.join(still[:10])}")
        self._done("upgrade", upgraded=before)

    def _reboot(self) -> None:
        boot_id, required = self._boot_state(self.ex)
        if not required:
            self._done("reboot", rebooted=False)
            return
        try:
            result = self.ex.run(self.cfg.reboot_command, timeout=PROBE_TIMEOUT, user="root")
            if not result.ok and result.exit_status != -1:  # -1: the connection went down with the host
                raise StepFailed(f"reboot command failed: {result.describe()} (patching.reboot_command)")
        except (HostUnreachable, CommandTimeout):
            pass  # the host went down under the command: that is the reboot
        self.ex.close()
        self._audit(self.host, "reboot", "issued", boot_id=boot_id)
        self._progress(f"{self.host.name}: rebooting, waiting up to {self.cfg.reboot_timeout:g}s for SSH")
        self._wait_rebooted(boot_id)
        self._done("reboot", rebooted=True)

    def _boot_state(self, executor: SshExecutor) -> tuple[str, bool]:
        result = executor.run(BOOT_PROBE, timeout=PROBE_TIMEOUT)
        if not result.ok:
            raise StepFailed(f"cannot read the boot id: {result.describe()}")
        lines = result.stdout.split()
        return (lines[0] if lines else ""), "reboot-required" in lines

    def _wait_rebooted(self, old_boot_id: str) -> None:
        """Back = SSH answers and the host booted (new boot id, or the tmpfs marker is gone)."""
        deadline = time.monotonic() + self.cfg.reboot_timeout
        interval = min(5.0, max(0.25, self.cfg.reboot_timeout / 60))
        last = "no answer yet"
        while time.monotonic() < deadline:
            executor = self._connect()
            executor.connect_timeout = max(0.5, min(executor.connect_timeout, deadline - time.monotonic()))
            try:
                boot_id, required = self._boot_state(executor)
                if boot_id != old_boot_id or not required:
                    return
                last = "SSH answers but the host has not rebooted yet"
            except HostKeyError:
                raise
            except (ExecutionError, StepFailed) as exc:
                last = str(exc)
            finally:
                executor.close()
            time.sleep(max(0.0, min(interval, deadline - time.monotonic())))
        raise StepFailed(f"{self.host.name} did not come back within {self.cfg.reboot_timeout:g}s of the reboot"
                         f" (patching.reboot_timeout; last: {last}); it stays out of service")



def next_step(entry: dict[str, Any], steps: Sequence[str] = STEPS, after: dict[str, str] = AFTER,
              again: Sequence[str] = (AFTER["check"],)) -> str:
    """Where a host continues: after its last completed transition; from the first step when it
    has none or its state is in ``again`` (patch: check again if not drained)."""
    state = entry.get("last_ok") if entry["state"] == FAILED else entry["state"]
    if state in (None, PENDING, *again):
        return steps[0]
    done = [step for step, left in after.items() if left == state]
    if not done:
        raise StepFailed(f"host {entry.get('name')}: unknown state {state!r} in the rollout state file")
    return steps[min(steps.index(done[0]) + 1, len(steps) - 1)]
