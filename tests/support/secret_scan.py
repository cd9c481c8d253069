"""The canary secrets, the world that serves them, and the scan that looks for them in any form.

Each canary holds ``"``, ``\\`` and a non-ASCII letter, which every serialisation writes
differently (JSON escapes all three, ``ensure_ascii=False`` keeps the letter, ``repr`` doubles
the backslash and may escape a quote), so masking that runs after serialisation cannot match
it. Each also has plain parts (``fragments``) that survive any escaping: a secret masked only in
part, or written in a form this module does not list, still shows through them.

One canary per reference kind: ``env:`` and ``file:`` as written, ``aws-sm:`` on the moto server,
``vault:`` on a stand-in for Vault's KV v2 read call (there is no Vault server package for
Debian, and HashiCorp's licence keeps it out of this project: ``aep_ops.base.vault`` is a plain
HTTP client, so a real HTTP server answering its one GET is what it talks to). The Vault token
is a canary too.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator

from tests.conftest import REPO

MIN_FRAGMENT = 6  # shorter pieces could occur in ordinary output by chance


@dataclass(frozen=True)
class Canary:
    kind: str
    value: str

    def forms(self) -> dict[str, str]:
        """Every way a writer may spell the value (without the surrounding quotes)."""
        v = self.value
        both_quotes = "'\""  # a string holding both quotes makes repr escape the single one
        return {
            "raw": v,
            "json.dumps": json.dumps(v)[1:-1],
            "json.dumps(ensure_ascii=False)": json.dumps(v, ensure_ascii=False)[1:-1],
            "repr": repr(v)[1:-1],
            "repr inside a text with both quotes": repr(v + both_quotes)[1:-4],
            "ascii": ascii(v)[1:-1],
            "json.dumps of the repr": json.dumps(repr(v)[1:-1])[1:-1],
        }

    @property
    def fragments(self) -> list[str]:
        """The plain pieces between the characters that escaping changes, and the ASCII runs."""
        pieces = re.split(r"[\"'\\]", self.value) + re.findall(r"[ -~]+", self.value)
        return sorted({p for p in pieces if len(p) >= MIN_FRAGMENT and not re.search(r"[\"'\\]", p)})


CANARIES = (
    Canary("env", 'eNv7Hq"mD2xKe\\p\u00e99c1e4a7b3d'),
    Canary("file", 'fIl3Wq"zR8tUb\\Stra\u00dfe4b2d8e1f6a'),
    Canary("aws-sm", 'aWs5Km"yT6pLc\\\u5bc6\u78017e3f0a9c2b'),
    Canary("vault", "vAu1Tz'xQ3nJd\"hG5wEr\\\u00fc2c8f4b6a1d"),
    Canary("vault-token", 'tOk9Bn"cV4mYs\\\u00e90a7d3c9e5f'),
)
BY_KIND = {c.kind: c for c in CANARIES}


def leaks(places: dict[str, bytes | str], canaries: tuple[Canary, ...] = CANARIES) -> list[str]:
    """Where any form or fragment of any canary appears (UTF-8 bytes); empty when nowhere."""
    found = []
    for where, data in places.items():
        blob = data if isinstance(data, bytes) else data.encode("utf-8", "surrogateescape")
        for canary in canaries:
            spelled = [f"{name} form" for name, text in canary.forms().items() if text.encode() in blob]
            spelled += [f"fragment {frag!r}" for frag in canary.fragments if frag.encode() in blob]
            if spelled:
                found.append(f"{where}: the {canary.kind} canary ({', '.join(spelled)})")
    return found


def files_under(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` (hidden ones, temporary leftovers, WAL files included)."""
    return {str(p): p.read_bytes() for p in sorted(Path(root).rglob("*")) if p.is_file() and not p.is_symlink()}


class _VaultKv2(BaseHTTPRequestHandler):
    """Vault's KV v2 read (``GET /v1/secret/data/aep/canary`` with X-Vault-Token); 403 otherwise."""

    def do_GET(self) -> None:
        token = self.headers.get("X-Vault-Token", "")
        if token != BY_KIND["vault-token"].value or self.path != "/v1/secret/data/aep/canary":
            self.send_response(403)
            self.end_headers()
            return
        self.server.reads += 1  # type: ignore[attr-defined]
        body = json.dumps({"data": {"data": {"pass": BY_KIND["vault"].value}, "metadata": {"version": 1}}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def vault_server() -> Iterator[ThreadingHTTPServer]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _VaultKv2)
    server.reads = 0  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@dataclass
class CanaryWorld:
    """What a CLI run needs to resolve every canary: its environment variables and ``--set`` flags."""

    env: dict[str, str]
    set_flags: list[str]
    vault: ThreadingHTTPServer


@contextmanager
def canary_world(tmp_path: Path, moto_server, *, journal_dsn: str | None = None) -> Iterator[CanaryWorld]:
    """Environment ``dev`` whose configuration names one canary per reference kind: ``env:`` (the
    database password), ``file:`` (the S3 key), ``vault:`` (the cipher passphrase, token ``env:``)
    in the configuration file, and ``aws-sm:`` (the S3 key secret) given by ``--set``. With
    ``journal_dsn`` the journal is that PostgreSQL database (its DSN an ``env:`` reference)."""
    name = f"aep/canary-{uuid.uuid4().hex[:8]}"
    moto_server.client("secretsmanager").create_secret(
        Name=name, SecretString=json.dumps({"password": BY_KIND["aws-sm"].value}))
    secret_file = tmp_path / "canary-secret"
    secret_file.write_text(BY_KIND["file"].value + "\n", encoding="utf-8")
    with vault_server() as vault:
        conf = tmp_path / "canary.yaml"
        journal = "journal: {dsn: 'env:AEP_CANARY_JOURNAL_DSN'}\n" if journal_dsn else ""
        conf.write_text(
            f"{journal}vault: {{addr: 'http://127.0.0.1:{vault.server_port}', token: 'env:AEP_CANARY_VAULT_TOKEN'}}\n"
            "environments:\n  dev:\n"
            f"    aws: {{region: {moto_server.region}, endpoint_url: '{moto_server.endpoint_url}'}}\n"
            "    database: {password: 'env:AEP_CANARY_ENV'}\n"
            f"    backup:\n      s3: {{key: 'file:{secret_file}', cipher_pass: 'vault:secret/aep/canary#pass'}}\n",
            encoding="utf-8")
        env = {key: value for key, value in moto_server.environ.items() if key != "AWS_ENDPOINT_URL"}
        env.update({"AEP_OPS_CONFIG": str(conf), "AEP_OPS_ACTOR": "canary-bot", "AEP_CANARY_ENV": BY_KIND["env"].value,
                    "AEP_CANARY_VAULT_TOKEN": BY_KIND["vault-token"].value,
                    "AEP_OPS_PLUGINS": "tests.support.canary_runbooks",
                    "AEP_OPS_RUNBOOK_DIRS": str(REPO / "tests" / "support" / "runbooks")})
        if journal_dsn:
            env["AEP_CANARY_JOURNAL_DSN"] = journal_dsn
        yield CanaryWorld(env=env, set_flags=["--set", f"backup.s3.key_secret=aws-sm:{name}#password"], vault=vault)


def run_id_of(proc) -> str:
    """The run id a failed run's last stderr line names (``... --resume RUN_ID``)."""
    last = proc.stderr.strip().splitlines()[-1]
    assert "--resume " in last, (proc.returncode, proc.stdout, proc.stderr)
    return last.split("--resume ")[1].strip()


def run_canaries(cli, world: CanaryWorld, out_dir: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Run the canary runbooks through every front-door output; return (name -> captured text,
    runbook -> run id). Only exit codes are checked here, so that a leak is reported by the scan
    (every place at once); ``outputs_say_what_happened`` checks the masked texts after it."""
    flags = ["--env", "dev", *world.set_flags]
    captured: dict[str, str] = {}

    def keep(name: str, proc, rc: int):
        captured[f"{name} stdout"], captured[f"{name} stderr"] = proc.stdout, proc.stderr
        assert proc.returncode == rc, (name, proc.returncode, proc.stdout, proc.stderr)
        return proc

    json_file, crash_file = out_dir / "leak.json", out_dir / "crash.json"
    leak = keep("canary.leak --json --json-file", cli("canary.leak", *flags, "--json", "--json-file", str(json_file),
                                                      env=world.env), 0)
    captured["--json-file"] = json_file.read_text(encoding="utf-8")
    keep("canary.leak (text)", cli("canary.leak", *flags, env=world.env), 0)
    keep("canary.leak --dry-run", cli("canary.leak", *flags, "--dry-run", env=world.env), 0)
    keep("canary.leak --dry-run --json", cli("canary.leak", *flags, "--dry-run", "--json", tool="aep-ops",
                                             env=world.env), 0)
    failed = keep("canary.fail (text)", cli("canary.fail", *flags, env=world.env), 1)
    keep("canary.fail --json", cli("canary.fail", *flags, "--json", env=world.env), 1)
    crashed = keep("canary.crash --json", cli("canary.crash", *flags, "--json", env=world.env), 1)
    keep("canary.crash --json-file", cli("canary.crash", *flags, "--json-file", str(crash_file), env=world.env), 1)
    captured["canary.crash --json-file"] = crash_file.read_text(encoding="utf-8")
    keep("canary.internal", cli("canary.internal", *flags, env=world.env), 1)

    runs = {"canary.leak": json.loads(leak.stdout)["run_id"], "canary.fail": run_id_of(failed),
            "canary.crash": json.loads(crashed.stdout)["run_id"]}
    for tool in ("inv", "aep-ops"):
        keep(f"{tool} runs.list", cli("runs.list", tool=tool, env=world.env), 0)
    keep("runs.list --json", cli("runs.list", "--json", env=world.env), 0)
    for runbook, run_id in runs.items():
        keep(f"runs.show {runbook}", cli("runs.show", run_id, env=world.env), 0)
        keep(f"runs.show {runbook} --json", cli("runs.show", run_id, "--json", env=world.env), 0)
    assert world.vault.reads >= 1, "the vault: canary was never read from the stand-in"  # type: ignore[attr-defined]
    return captured, runs


def outputs_say_what_happened(captured: dict[str, str]) -> None:
    """Each run resolved every canary (a scan of a run that never did would prove nothing) and its
    outputs still say what happened, with ``****`` where the values were."""
    leak = json.loads(captured["canary.leak --json --json-file stdout"])
    assert leak["outputs"]["resolve_all"]["values"] == ["****"] * len(CANARIES), leak["outputs"]
    dsn = "postgresql://app:****@db/aep"
    assert leak["summary"]["dsn"] == json.loads(captured["--json-file"])["summary"]["dsn"] == dsn
    assert "dsn: postgresql://app:****@db/aep" in captured["canary.leak (text) stdout"]
    assert "log in with **** and **** and" in captured["canary.leak --dry-run stdout"]
    assert "could not log in with ****" in captured["canary.fail (text) stdout"]
    failed = json.loads(captured["canary.fail --json stdout"])
    assert failed["error"].startswith("step fail_with_secrets: could not log in with ****\nDETAIL: env said ****")
    crashed = json.loads(captured["canary.crash --json stdout"])
    assert crashed["error"] == "step crash_with_secret: KeyError: 'no role for password **** **** **** **** ****'"
    assert "internal error: LookupError: {'password': '****', 'all': ['****', " in captured["canary.internal stderr"]
