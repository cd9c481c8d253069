"""repo2 on S3 (moto behind nginx TLS), AES-256 encrypted: back up, restore from it alone, prove encryption.

The restore runs while repo1 is moved away (the local disk is "lost"), so both the backup
files and the WAL replayed come from repo2. Encryption is proven on the raw object bytes:
every object carries pgBackRest's OpenSSL-compatible header ``Salted__``, and a sentinel
string plus the file names in the manifest, present in plaintext in repo1, appear in no
object. The passphrase and the S3 secret key never reach a log, the journal or the CLI output.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import pytest

from aep_ops import config

from aep_ops.db import locations
from aep_ops.pg.cluster import LocalCluster
from aep_ops.testing.postgres import free_port
from tests.support.amcheck import pg_amcheck

pytestmark = pytest.mark.slow
CIPHER_PASS = "aep-cipher-" + uuid.uuid4().hex


@pytest.fixture
def s3_env(local_env, moto_account, s3_tls_proxy, monkeypatch):
    """repo2 in a bucket of this test's own moto account, reached by pgBackRest with an access
    key of an IAM user of that account; yields (state dir, bucket, the key's secret)."""
    werkzeug = logging.getLogger("werkzeug")  # moto logs one line per S3 request
    level = werkzeug.level
    werkzeug.setLevel(logging.WARNING)
    bucket = "aep-offsite-" + uuid.uuid4().hex[:8]
    moto_account.client("s3").create_bucket(Bucket=bucket,
                                            CreateBucketConfiguration={"LocationConstraint": moto_account.region})
    iam = moto_account.client("iam")
    iam.create_user(UserName="pgbackrest")
    access = iam.create_access_key(UserName="pgbackrest")["AccessKey"]
    monkeypatch.setenv("AEP_TEST_S3_KEY", access["AccessKeyId"])
    monkeypatch.setenv("AEP_TEST_S3_SECRET", access["SecretAccessKey"])
    monkeypatch.setenv("AEP_TEST_CIPHER_PASS", CIPHER_PASS)
    prefix = "AEP_OPS_ENVIRONMENTS__LOCAL__BACKUP__S3__"
    for key, value in {"BUCKET": bucket, "ENDPOINT": s3_tls_proxy.server_name, "PORT": str(s3_tls_proxy.port),
                       "REGION": moto_account.region, "KEY": "env:AEP_TEST_S3_KEY",
                       "KEY_SECRET": "env:AEP_TEST_S3_SECRET", "CIPHER_PASS": "env:AEP_TEST_CIPHER_PASS",
                       "CA_FILE": s3_tls_proxy.ca_file, "RETENTION_FULL": "1"}.items():
        monkeypatch.setenv(prefix + key, value)
    try:
        yield local_env, bucket, access["SecretAccessKey"]
    finally:
        werkzeug.setLevel(level)


def _objects(moto, bucket: str) -> dict[str, bytes]:
    """Every object's bytes exactly as stored, read from the in-process moto backend.

    (1,300 GETs through moto's HTTP server take ~9 s; the listing still goes over HTTP, so the
    two must agree.)
    """
    from moto.s3.models import s3_backends

    listed = {o["Key"] for page in moto.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket)
              for o in page.get("Contents", [])}
    stored = s3_backends[moto.account_id]["global"].get_bucket(bucket).keys
    objects = {name: stored[name].value for name in listed}
    assert len(objects) == len(listed) > 0
    return objects


def _files(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_backup_to_s3_restore_from_it_alone_and_objects_are_encrypted(s3_env, moto_account, cli):
    state, bucket, s3_secret = s3_env
    outputs = [cli("db.setup", check_rc=0)]
    conf = state / "pgbackrest/pgbackrest.conf"
    assert oct(conf.stat().st_mode & 0o777) == "0o600", "a config holding secrets is 0600 (postgres)"

    settings = config.load("local")
    db = locations.local_db(settings)
    sentinel = "AEP-SENTINEL-" + uuid.uuid4().hex
    with db.cluster.connect(db.dbname) as conn:
        conn.execute("insert into drill_markers (label) values (%s)", (sentinel,))
        conn.execute("checkpoint")  # the row's page on disk, so the backup copies it
    backup = cli("backup.run", "--repo", "2", "--json", check_rc=0)
    outputs.append(backup)
    out = json.loads(backup.stdout)["outputs"]["run_backup"]
    assert out["repo"] == 2 and out["type"] == "full"
    print(f"backup.run --repo 2 (S3 via TLS, encrypted): {out['seconds']}s")
    outputs.append(cli("backup.setup", check_rc=0))  # WAL after the backup reaches repo2 too
    listed = json.loads(cli("backup.list", "--json", check_rc=0).stdout)
    assert {b["repo"] for b in listed} == {1, 2}
    outputs.append(cli("backup.verify", "--repo", "2", check_rc=0))

    # Restore with repo1 gone: backup files and WAL must come from S3.
    repo1 = Path(db.backrest.config.repo1_path)
    away = repo1.with_name("repo.lost")
    base = state / "pg" / "restores" / "from-s3"
    restored = LocalCluster(base / "data", free_port(), base / "sock")
    repo1.rename(away)
    try:
        db.backrest.restore(restored.datadir, repo=2)
        restored.configure({"fsync": "off"})
        restored.disable_archiving()
        restored.start(wait=False)
        promoted = restored.wait_for_promotion(timeout=60, expect_target=False)
        with restored.connect(db.dbname) as conn:
            labels = {r[0] for r in conn.execute("select label from drill_markers")}
            assert sentinel in labels
            assert pg_amcheck(conn).ok
        assert promoted.archive_mode == "off"
    finally:
        restored.stop(mode="immediate")
        away.rename(repo1)

    objects = _objects(moto_account, bucket)
    assert any("/backup/aep/" in k for k in objects) and any("/archive/aep/" in k for k in objects)
    assert all(body.startswith(b"Salted__") for body in objects.values() if body), "every object is encrypted"
    local = _files(repo1)
    assert any(sentinel.encode() in body for body in local.values()), "control: repo1 holds the sentinel in clear"
    assert any(b"PG_VERSION" in body for body in local.values()), "control: repo1's manifest names files in clear"
    for key, body in objects.items():
        assert sentinel.encode() not in body and b"PG_VERSION" not in body, key

    sinks = {p: b for p, b in _files(state).items() if p != str(conf)}
    for secret in (CIPHER_PASS, s3_secret):
        assert not [p for p, b in sinks.items() if secret.encode() in b], "a secret reached a file"
        assert all(secret not in o.stdout + o.stderr for o in outputs)
    assert CIPHER_PASS.encode() in conf.read_bytes(), "control: the secret is where pgBackRest needs it"
