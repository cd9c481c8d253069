"""pg_amcheck, PostgreSQL's own parallel checker, run against one database and its report parsed.

Why the program and not one SQL statement: pg_amcheck spreads the relations over ``--jobs``
connections (one ``bt_index_check`` statement on one connection took 0.5-0.8 s per GB, hours at
500 GB), it checks the heap (``verify_heapam``) as well as the B-tree indexes, and it reports every
corrupt relation instead of stopping at the first.

    job = AmcheckJob.start(bindir, conninfo, AmcheckOptions(jobs=4, heap=True, heapallindexed=True))
    ...                          # other checks run meanwhile: pg_amcheck only reads
    result = job.wait(timeout)   # AmcheckResult: findings, exit code, seconds

The connection string is the last argument, behind ``--``; a password never is: it goes in a
passfile (0600) that only the run can read, removed when the job ends. pg_amcheck writes its
report to files (not pipes: a database with many corrupt pages cannot fill a pipe and stall it),
and ``--progress`` to stderr, which ``progress()`` reads back as pages checked of the total.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aep_ops.base.errors import StepFailed
from aep_ops.pg.bin import pg_bin

MAX_FINDINGS = 200  # kept in full; the rest are counted
# "heap table "db.schema.rel", block 3, offset 2, attribute 1:" / "btree index "db.schema.rel":"
_HEADER = re.compile(r'^(heap table|btree index) "([^"]*)"(?:, (.*))?:$')
_ERROR = re.compile(r"^(error|warning|fatal|ERROR|WARNING|FATAL):")
_PROGRESS = re.compile(r"(\d+)/(\d+) relations \(\s*\d+%\),\s*(\d+)/(\d+) pages")
PAGE_BYTES = 8192
# What pg_amcheck's libpq is given of the checked connection: the keys every libpq since 10 knows
# (psycopg's own libpq may be newer and report keys, such as sslcertmode, that an older one refuses).
CONNINFO_KEYS = ("host", "hostaddr", "port", "dbname", "user", "sslmode", "sslrootcert", "sslcert", "sslkey",
                 "sslcrl", "gssencmode", "target_session_attrs")


@dataclass(frozen=True)
class AmcheckOptions:
    jobs: int = 1
    heap: bool = False  # verify_heapam on every table (and its TOAST table), not only the indexes
    heapallindexed: bool = False  # every heap tuple must be found in each B-tree index

    def describe(self) -> str:
        what = "tables and B-tree indexes" if self.heap else "B-tree indexes"
        return f"{what}, {self.jobs} job{'s' if self.jobs != 1 else ''}" + (", heapallindexed" if self.heapallindexed
                                                                           else "")


@dataclass(frozen=True)
class Finding:
    kind: str  # "heap table" | "btree index"
    relation: str  # schema.name (the database dropped: there is one)
    where: str  # "block 3, offset 2" or ""
    message: str  # what pg_amcheck said, first line

    def describe(self) -> str:
        return f"{self.relation}{f' ({self.where})' if self.where else ''}: {self.message}"


@dataclass
class AmcheckResult:
    exit_code: int
    seconds: float
    findings: list[Finding] = field(default_factory=list)
    more_findings: int = 0  # beyond MAX_FINDINGS
    errors: list[str] = field(default_factory=list)  # pg_amcheck's own (could not connect, no amcheck)

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.findings and not self.errors

    @property
    def corrupt_relations(self) -> list[str]:
        return sorted({f.relation for f in self.findings})


def argv(bindir: str | os.PathLike[str] | None, conninfo: str, options: AmcheckOptions) -> list[str]:
    """The command line. Without heap checks only the B-tree indexes are selected (``--index``);
    with them every table, its TOAST table and its indexes (pg_amcheck's default selection)."""
    words = [pg_bin("pg_amcheck", bindir), f"--jobs={max(1, options.jobs)}", "--no-password", "--progress"]
    if not options.heap:
        words.append("--index=*.*")
    if options.heapallindexed:
        words.append("--heapallindexed")
    return [*words, "--", conninfo]


class AmcheckJob:
    """One pg_amcheck process started in the background (``start``) and waited for (``wait``)."""

    def __init__(self, process: subprocess.Popen, workdir: Path, started: float, command: list[str]) -> None:
        self.process, self.workdir, self.started, self.command = process, workdir, started, command
        self.result: AmcheckResult | None = None

    @classmethod
    def start(cls, bindir: str | os.PathLike[str] | None, conninfo: str, options: AmcheckOptions, *,
              password: str | None = None) -> "AmcheckJob":
        command = argv(bindir, conninfo, options)
        workdir = Path(tempfile.mkdtemp(prefix="aep-amcheck-"))
        env = {**os.environ, "PGAPPNAME": "aep-ops pg_amcheck", "PGCONNECT_TIMEOUT": "10"}
        env.pop("PGPASSWORD", None)
        if password:
            env["PGPASSFILE"] = str(_passfile(workdir, password))
        try:
            with open(workdir / "stdout", "wb") as out, open(workdir / "stderr", "wb") as err:
                process = subprocess.Popen(_dies_with_us(command), stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                           env=env)
        except OSError as exc:
            shutil.rmtree(workdir, ignore_errors=True)
            raise StepFailed(f"could not start pg_amcheck: {exc}") from exc
        return cls(process, workdir, time.monotonic(), command)

    @property
    def running(self) -> bool:
        return self.result is None and self.process.poll() is None

    def progress(self) -> tuple[int, int] | None:
        """(bytes checked, bytes to check) from pg_amcheck's last ``--progress`` line, pages x 8 KiB."""
        try:
            with open(self.workdir / "stderr", "rb") as fh:
                fh.seek(max(0, os.fstat(fh.fileno()).st_size - 512))
                tail = fh.read().decode(errors="replace")
        except OSError:
            return None
        found = _PROGRESS.findall(tail)
        if not found:
            return None
        _, _, done, total = found[-1]
        return int(done) * PAGE_BYTES, int(total) * PAGE_BYTES

    def wait(self, timeout: float) -> AmcheckResult:
        """The parsed result; StepFailed (the process stopped) when it runs past ``timeout``."""
        if self.result is not None:
            return self.result
        try:
            code = self.process.wait(timeout=max(0.0, timeout))
        except subprocess.TimeoutExpired:
            self.terminate()
            raise StepFailed(f"pg_amcheck still running after {timeout:.0f} s; stopped it"
                             " (raise drill.amcheck.timeout_seconds, or check fewer things: drill.amcheck)") from None
        try:
            self.result = parse(code, (self.workdir / "stdout").read_text(errors="replace"),
                                (self.workdir / "stderr").read_text(errors="replace"),
                                round(time.monotonic() - self.started, 3))
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)
        return self.result

    def terminate(self) -> None:
        """Stop it (SIGTERM, then SIGKILL after 5 s) and remove its files; nothing to do once done."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


def parse(exit_code: int, stdout: str, stderr: str, seconds: float) -> AmcheckResult:
    """pg_amcheck's report: a header line per corrupt relation (or page), its messages indented below.
    Errors and warnings on stderr are kept (progress and other notices are not)."""
    result = AmcheckResult(exit_code=exit_code, seconds=seconds)
    header: tuple[str, str, str] | None = None
    for line in stdout.splitlines():
        match = _HEADER.match(line.strip()) if not line.startswith((" ", "\t")) else None
        if match:
            kind, name, where = match.group(1), match.group(2), match.group(3) or ""
            header = (kind, name.split(".", 1)[1] if name.count(".") >= 2 else name, where)
            continue
        text = line.strip()
        if not text or header is None:
            continue
        if text.startswith(("DETAIL:", "HINT:", "CONTEXT:")) and result.findings:
            continue  # the first line names the problem; these follow it in the full output only
        if len(result.findings) < MAX_FINDINGS:
            result.findings.append(Finding(header[0], header[1], header[2], _strip_level(text)))
        else:
            result.more_findings += 1
        header = None if header[0] == "btree index" else header  # an index error is one message
    for chunk in re.split(r"[\r\n]+", stderr):
        text = chunk.strip().removeprefix("pg_amcheck: ")
        if _ERROR.match(text):  # its own errors and warnings ("skipping database: amcheck is not
            result.errors.append(text)  # installed"), and the server's (a page checksum that failed)
    if exit_code != 0 and not result.findings and not result.errors:
        result.errors.append(f"pg_amcheck exited {exit_code} without naming a relation")
    return result


def _strip_level(text: str) -> str:
    return re.sub(r"^(ERROR|WARNING|FATAL):\s+", "", text)


def _passfile(workdir: Path, password: str) -> Path:
    """A libpq passfile (``*:*:*:*:password``, ``:`` and ``\\`` escaped), 0600."""
    path = workdir / "pgpass"
    escaped = password.replace("\\", "\\\\").replace(":", "\\:")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"*:*:*:*:{escaped}\n")
    return path


def _dies_with_us(command: list[str]) -> list[str]:
    """Linux: the checker gets SIGKILL when this process dies (a drill killed mid-way leaves no
    pg_amcheck reading the copy behind it); ``setpriv`` is util-linux, on every Debian."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--", *command] if setpriv else command


def conninfo_of(conn: Any) -> tuple[str, str | None]:
    """(connection string without the password, the password) of an open psycopg connection."""
    from psycopg.conninfo import make_conninfo

    params = {k: v for k, v in conn.info.get_parameters().items() if k in CONNINFO_KEYS}
    return make_conninfo(**params), conn.info.password or None
