"""``demo.greet``: the smallest complete runbook, kept as the worked example for adding one.

It writes a greeting and its checksum under STATE_DIR/demo. Every step is desired-state,
so a second run changes nothing. ``--pause`` slows the write step down, to watch progress
or to practise killing and resuming a run.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

from aep_ops.engine.context import RunContext
from aep_ops.engine.runbook import runbook
from aep_ops.engine.step import Plan, Step
from aep_ops.base.errors import UsageError, VerificationFailed


def _demo_dir(ctx: RunContext) -> Path:
    return ctx.state_dir / "demo"


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class EnsureDemoDir(Step):
    id = "ensure_demo_dir"
    title = "Ensure the demo directory exists"

    def check(self, ctx):
        path = _demo_dir(ctx)
        if path.is_dir():
            return Plan.unchanged(f"{path} exists", dir=str(path))
        return Plan.change(f"create {path}")

    def apply(self, ctx, plan):
        _demo_dir(ctx).mkdir(mode=0o755, parents=True, exist_ok=True)
        return {"dir": str(_demo_dir(ctx))}

    def verify(self, ctx, outputs):
        if not _demo_dir(ctx).is_dir():
            raise VerificationFailed(f"{_demo_dir(ctx)} was not created")


class EnsureGreeting(Step):
    id = "ensure_greeting"
    title = "Write the greeting"
    timeout = 600

    def check(self, ctx):
        path = Path(ctx.output("ensure_demo_dir", "dir")) / "greeting.txt"
        wanted = ctx.params["text"]
        if path.is_file() and path.read_text() == wanted:
            return Plan.unchanged("greeting already written", path=str(path))
        return Plan.change(f"write {wanted.strip()!r} to {path}")

    def apply(self, ctx, plan):
        path = Path(ctx.output("ensure_demo_dir", "dir")) / "greeting.txt"
        for second in range(int(ctx.params["pause"])):
            ctx.progress(f"pausing: {second + 1}/{ctx.params['pause']} s")
            time.sleep(1)
        _write_atomically(path, ctx.params["text"])
        return {"path": str(path)}

    def verify(self, ctx, outputs):
        if Path(outputs["path"]).read_text() != ctx.params["text"]:
            raise VerificationFailed(f"{outputs['path']} does not hold the greeting")


class EnsureChecksum(Step):
    id = "ensure_checksum"
    title = "Record the greeting's checksum"

    def check(self, ctx):
        greeting = Path(ctx.output("ensure_greeting", "path"))
        path = greeting.with_suffix(".sha256")
        digest = hashlib.sha256(greeting.read_bytes()).hexdigest()
        if path.is_file() and path.read_text().split()[0] == digest:
            return Plan.unchanged("checksum matches", path=str(path))
        return Plan.change(f"write sha256 {digest[:12]}... to {path}", digest=digest)

    def apply(self, ctx, plan):
        greeting = Path(ctx.output("ensure_greeting", "path"))
        path = greeting.with_suffix(".sha256")
        _write_atomically(path, f"{plan.details['digest']}  {greeting.name}\n")
        return {"path": str(path)}


@runbook("demo.greet", steps=[EnsureDemoDir, EnsureGreeting, EnsureChecksum],
         summary="Write a greeting and its checksum (the worked example of a runbook)",
         help={"name": "who to greet", "pause": "seconds to pause while writing (to watch or kill a run)"},
         bounds={"pause": (0, 3600)})
def greet(ctx: RunContext, *, name: str = "world", pause: int = 0) -> None:
    """Validate the input; the steps do the work."""
    if not name.strip() or "\n" in name:
        raise UsageError("--name must be a non-empty single line")
    ctx.params["text"] = f"Hello, {name.strip()}!\n"
