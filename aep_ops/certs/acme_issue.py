"""Issue one certificate through ACME (RFC 8555) with the ``acme`` library: the core of ``certs.renew``.

What this module owns, and why:

- The account key file. Created with mode 0600 (``O_CREAT|O_EXCL``, so two runs never write one
  each) as ECDSA P-256 (ES256): small, fast, and accepted by Let's Encrypt and every RFC 8555 CA;
  an existing RSA key (e.g. carried over from certbot) is used as RS256. A file readable by group or
  others is refused: the account key can revoke every certificate of the account.
- Challenges through a callback object (``kind`` "http-01" or "dns-01", ``present``/``cleanup``), so
  the runbook wires webroots over SSH or Route 53 later. Everything presented is cleaned up, even
  when validation fails. ``present`` must return only once the answer is visible to the CA (a TXT
  record INSYNC, a file on every serving host).
- badNonce: each signed request is retried on ``badNonce`` up to ``nonce_attempts`` times in all
  (acme's ClientNetwork.post retries once by itself; this replaces that retry with a bounded
  budget instead of stacking on it). Any other error is not retried here.
- Errors: every acme/requests/josepy error becomes one ``AcmeError`` line saying what failed, where,
  and what to check. No message, log event or exception built here ever contains key material.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol, Sequence

from aep_ops.certs import keys
from aep_ops.base.errors import AepError, ExecutionError, UsageError
from aep_ops.base.log import get_logger

log = get_logger(__name__)

NONCE_ATTEMPTS = 10
CHALLENGE_KINDS = ("http-01", "dns-01")
VALIDATION_HINTS = {
    "http-01": "check that port 80 of each name reaches a host serving the webroot's /.well-known/acme-challenge/",
    "dns-01": "check that the _acme-challenge TXT records are published where the CA resolves them",
}


class AcmeError(ExecutionError):
    """The ACME exchange failed: the CA is unreachable, refused a request, or a challenge failed."""


class Challenge(Protocol):
    """How the runbook answers challenges: http-01 writes ``value`` to ``WEBROOT/name`` on every
    serving host; dns-01 adds a TXT record ``name`` with ``value``."""

    kind: str

    def present(self, domain: str, name: str, value: str) -> None: ...

    def cleanup(self, domain: str, name: str, value: str) -> None: ...


@dataclass(frozen=True)
class Issued:
    """An issued certificate. PEMs are text; ``serial`` is lowercase hex; times are aware UTC."""

    key_pem: str
    cert_pem: str
    chain_pem: str
    fullchain_pem: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    issuer: str
    account_url: str

    def __repr__(self) -> str:  # the private key never lands in a log line or a traceback
        return f"Issued(serial={self.serial}, not_after={self.not_after.isoformat()}, issuer={self.issuer!r})"


def is_staging_directory(url: str) -> bool:
    """True for a test CA: a URL containing "staging" (Let's Encrypt's acme-staging-v02, other CAs'
    staging endpoints) or a CA on the loopback (pebble in tests). Production refuses these."""
    from urllib.parse import urlparse

    host = (urlparse(url).hostname or "").lower()
    return "staging" in url.lower() or host in ("127.0.0.1", "localhost", "::1")


def issue(directory_url: str, *, account_key_path: str | os.PathLike, ca_bundle: str | None,
          contact: str | Sequence[str] | None, domains: Sequence[str], key_type: str, challenge: Challenge,
          timeout: float = 90.0, on_progress: Callable[[str], None] | None = None,
          nonce_attempts: int = NONCE_ATTEMPTS) -> Issued:
    """Register (or find) the account, order ``domains``, answer the challenges, finalize, and
    return the certificate with its fresh private key. ``timeout`` bounds each network request
    and the polling of the order; ``on_progress`` gets short human lines."""
    say = on_progress or (lambda line: None)
    names = _checked_input(domains, key_type, challenge, nonce_attempts)
    account_key = load_or_create_account_key(Path(account_key_path))
    client = _connect(directory_url, account_key, ca_bundle, timeout, nonce_attempts)
    where = f"at {directory_url}"
    with _acme_step(f"ACME account registration {where}"):
        account_url = _register(client, contact)
    say(f"ACME account {account_url}")
    key_pem = keys.private_key_pem(keys.generate_private_key(key_type))
    with _acme_step(f"ACME order for {', '.join(names)} {where}"):
        order = client.new_order(keys.make_csr_pem(key_pem, names))
    say(f"order {order.uri} for {', '.join(names)}")
    order = _validate_and_finalize(client, order, challenge, names, timeout, say)
    issued = _issued(key_pem.decode(), order.fullchain_pem, account_url, names)
    say(f"issued serial {issued.serial}, valid until {issued.not_after.isoformat()}")
    return issued


def load_or_create_account_key(path: Path) -> Any:
    """The account key as a josepy JWK: reused when the file exists (and is 0600), else created."""
    import josepy
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if not path.exists():
        _create_account_key(path)
    _refuse_loose_mode(path)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise AcmeError(f"ACME account key {path} is not an unencrypted PEM private key;"
                        f" restore it from backup or move it away to register a new account") from exc
    except OSError as exc:
        raise AcmeError(f"ACME account key {path} cannot be read: {exc.strerror}") from exc
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1":
        return josepy.JWKEC(key=key)
    if isinstance(key, rsa.RSAPrivateKey):
        return josepy.JWKRSA(key=key)
    raise AcmeError(f"ACME account key {path} is {keys.key_description(key.public_key())};"
                    f" use ECDSA P-256 or RSA")


def _create_account_key(path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec

    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    pem = keys.private_key_pem(ec.generate_private_key(ec.SECP256R1()))
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return  # another run created it first: use theirs
    except OSError as exc:
        raise AcmeError(f"cannot create ACME account key {path}: {exc.strerror}") from exc
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    log.info("certs.acme.account_key.created", path=str(path))


def _refuse_loose_mode(path: Path) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise AcmeError(f"ACME account key {path} is readable by others (mode {mode:o}): chmod 600 {path}")


def _checked_input(domains: Sequence[str], key_type: str, challenge: Any, nonce_attempts: int) -> list[str]:
    keys.check_key_type(key_type)
    kind = getattr(challenge, "kind", None)
    if kind not in CHALLENGE_KINDS:
        raise UsageError(f"challenge kind {kind!r}: use one of {', '.join(CHALLENGE_KINDS)}")
    if nonce_attempts < 1:
        raise UsageError(f"nonce_attempts is {nonce_attempts}: at least 1")
    names = list(dict.fromkeys(d.strip().lower() for d in domains))
    if not names or not all(names):
        raise UsageError("no domains to certify: give at least one name")
    return names


def _connect(directory_url: str, account_key: Any, ca_bundle: str | None, timeout: float,
             nonce_attempts: int) -> Any:
    import josepy
    from acme import client as acme_client

    alg = josepy.ES256 if isinstance(account_key, josepy.JWKEC) else josepy.RS256
    net = _bounded_nonce_network(acme_client.ClientNetwork)(
        account_key, alg=alg, verify_ssl=ca_bundle or True, user_agent="aep-ops", timeout=timeout)
    net.nonce_attempts = nonce_attempts
    with _acme_step(f"ACME directory {directory_url}", directory=True):
        directory = acme_client.ClientV2.get_directory(directory_url, net)
    return acme_client.ClientV2(directory, net)


class _NoncesExhausted(Exception):
    def __init__(self, attempts: int) -> None:
        super().__init__(f"badNonce {attempts} times")
        self.attempts = attempts


def _bounded_nonce_network(base: type) -> type:
    """ClientNetwork whose signed POSTs retry badNonce up to ``nonce_attempts`` times in all."""
    from acme import messages

    class BoundedNonceNetwork(base):  # type: ignore[misc, valid-type]
        nonce_attempts = NONCE_ATTEMPTS

        def post(self, *args: Any, **kwargs: Any) -> Any:
            for attempt in range(1, self.nonce_attempts + 1):
                try:
                    return self._post_once(*args, **kwargs)  # a fresh nonce each time (the bad one is gone)
                except messages.Error as error:
                    if error.code != "badNonce":
                        raise
                    log.debug("certs.acme.bad_nonce", attempt=attempt, of=self.nonce_attempts)
            raise _NoncesExhausted(self.nonce_attempts)

    return BoundedNonceNetwork


def _register(client: Any, contact: str | Sequence[str] | None) -> str:
    from acme import errors, messages

    emails = [contact] if isinstance(contact, str) else list(contact or [])
    registration = messages.NewRegistration.from_data(
        email=",".join(e.removeprefix("mailto:") for e in emails) or None, terms_of_service_agreed=True)
    try:
        return client.new_account(registration).uri
    except errors.ConflictError as exists:  # this key already has an account: its URL is the answer
        location = str(exists.location)
        client.net.account = messages.RegistrationResource(uri=location, body=messages.Registration())
        return location


def _validate_and_finalize(client: Any, order: Any, challenge: Challenge, names: list[str], timeout: float,
                           say: Callable[[str], None]) -> Any:
    presented: list[tuple[str, str, str]] = []
    answered: list[str] = []
    try:
        for authz in order.authorizations:
            found = _pending_challenge(client, authz, challenge.kind)
            if found is None:
                continue  # authorization already valid (reused): nothing to prove
            domain, challb, name, value, response = found
            with _acme_step(f"{challenge.kind} present for {domain}", wrap_all=True):
                challenge.present(domain, name, value)
            presented.append((domain, name, value))
            say(f"{challenge.kind} presented for {domain}")
            with _acme_step(f"ACME challenge answer for {domain} ({challenge.kind})"):
                client.answer_challenge(challb, response)
            answered.append(domain)
        deadline = dt.datetime.now() + dt.timedelta(seconds=timeout)  # acme compares naive local times
        with _acme_step(f"ACME order for {', '.join(names)}", kind=challenge.kind, timeout=timeout):
            return client.poll_and_finalize(order, deadline=deadline)
    finally:
        _cleanup_all(challenge, presented, say)


def _pending_challenge(client: Any, authz: Any, kind: str) -> tuple | None:
    from acme import messages

    body = authz.body
    domain = ("*." if body.wildcard else "") + body.identifier.value
    if body.status == messages.STATUS_VALID:
        return None
    for challb in body.challenges:
        if challb.chall.typ == kind:
            if kind == "http-01":
                response, value = challb.response_and_validation(client.net.key)
                return domain, challb, challb.chall.path.lstrip("/"), value, response
            chall = challb.chall
            return (domain, challb, chall.validation_domain_name(body.identifier.value),
                    chall.validation(client.net.key), chall.response(client.net.key))
    offered = ", ".join(c.chall.typ for c in body.challenges) or "none"
    raise AcmeError(f"ACME CA offers no {kind} challenge for {domain} (offered: {offered});"
                    f" configure another challenge type for this name")


def _cleanup_all(challenge: Challenge, presented: list[tuple[str, str, str]], say: Callable[[str], None]) -> None:
    """Clean up everything presented, each on its own: one failure does not skip the others, and
    does not hide the outcome of the order (the issued certificate or its error)."""
    for domain, name, value in presented:
        try:
            challenge.cleanup(domain, name, value)
            say(f"{challenge.kind} cleaned up for {domain}")
        except Exception as exc:  # noqa: BLE001 (reported, and the next cleanup still runs)
            log.warning("certs.acme.cleanup.failed", domain=domain, name=name, kind=challenge.kind,
                        error=type(exc).__name__, message=_one_line(str(exc)))
            say(f"{challenge.kind} cleanup FAILED for {domain} ({name}): {type(exc).__name__}; remove it by hand")


def _issued(key_pem: str, fullchain_pem: str, account_url: str, names: list[str]) -> Issued:
    from cryptography import x509

    try:
        certs = x509.load_pem_x509_certificates(fullchain_pem.encode())
    except ValueError as exc:
        raise AcmeError(f"ACME CA returned an unreadable certificate chain for {', '.join(names)}") from exc
    leaf, pem = certs[0], [c.public_bytes(_pem_encoding()).decode() for c in certs]
    if not keys.key_matches_cert(key_pem, pem[0]):
        raise AcmeError(f"ACME CA returned a certificate for {', '.join(names)} that does not match the"
                        f" requested key (serial {leaf.serial_number:x}); do not deploy it")
    return Issued(key_pem=key_pem, cert_pem=pem[0], chain_pem="".join(pem[1:]), fullchain_pem="".join(pem),
                  serial=f"{leaf.serial_number:x}", not_before=leaf.not_valid_before_utc,
                  not_after=leaf.not_valid_after_utc, issuer=leaf.issuer.rfc4514_string(), account_url=account_url)


def _pem_encoding() -> Any:
    from cryptography.hazmat.primitives import serialization

    return serialization.Encoding.PEM


@contextmanager
def _acme_step(what: str, *, directory: bool = False, kind: str | None = None, timeout: float | None = None,
               wrap_all: bool = False) -> Iterator[None]:
    """Turn any acme/requests/josepy error inside into one AcmeError line about ``what``."""
    try:
        yield
    except AepError:  # already one actionable line (ours, or the challenge callback's)
        raise
    except Exception as exc:  # noqa: BLE001 (classified below; unknown ones re-raised as they are)
        message = _describe(exc, what, directory=directory, kind=kind, timeout=timeout)
        if message is None and wrap_all:
            message = f"{what} failed: {type(exc).__name__}: {_one_line(str(exc))}"
        if message is None:
            raise
        log.warning("certs.acme.failed", message=message)
        raise AcmeError(message) from exc


def _describe(exc: Exception, what: str, *, directory: bool, kind: str | None, timeout: float | None) -> str | None:
    import josepy
    import requests
    from acme import errors, messages

    if isinstance(exc, requests.exceptions.RequestException):
        reason = network_reason(exc)
        if isinstance(exc, requests.exceptions.SSLError):
            return f"{what} unreachable: {reason}; check acme.ca_bundle (the CA's TLS certificate is not trusted)"
        if directory:
            return f"{what} unreachable: {reason}; check acme.directory and that the CA is up"
        return f"{what} failed: CA unreachable: {reason}; check that the CA is up and retry"
    if isinstance(exc, _NoncesExhausted):
        return (f"{what} failed: the CA rejected {exc.attempts} fresh nonces in a row (badNonce);"
                f" the CA is unhealthy or a proxy replays requests, retry later")
    if isinstance(exc, errors.ValidationError):
        failures = "; ".join(_failed_authorization(a, kind) for a in exc.failed_authzrs)
        return f"{what} failed: {failures}; {VALIDATION_HINTS.get(kind or '', 'check the challenge')}"
    if isinstance(exc, errors.TimeoutError):
        return f"{what} not finished within {timeout:g}s; the CA is slow or validation hangs, retry later"
    if isinstance(exc, errors.IssuanceError):
        return f"{what} failed: {_problem(exc.error)}"
    if isinstance(exc, messages.Error):
        return f"{what} failed: {_problem(exc)}"
    if isinstance(exc, (errors.Error, josepy.errors.Error, ValueError, KeyError)):
        return f"{what} failed: unexpected answer from the CA: {type(exc).__name__}: {_one_line(str(exc))[:200]}"
    return None


def _failed_authorization(authzr: Any, kind: str | None) -> str:
    body = authzr.body
    domain = ("*." if body.wildcard else "") + body.identifier.value
    failed = [c for c in body.challenges if c.error is not None]
    if not failed:
        return f"authorization for {domain} is {body.status.name}"
    return "; ".join(f"{_problem(c.error)} ({c.chall.typ} on {domain})" for c in failed)


def _problem(error: Any) -> str:
    typ = error.typ or "error"
    detail = error.detail or error.title or ""
    return _one_line(f"{typ}: {detail}" if detail else typ)


def network_reason(exc: Exception) -> str:
    """Why a request failed, in a few words (connection refused, TLS, timeout, DNS)."""
    import requests

    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS verification failed"
    if isinstance(exc, requests.exceptions.Timeout):
        return "no answer before the timeout"
    for cause in _causes(exc):
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, OSError) and "Name or service not known" in str(cause):
            return "name does not resolve"
    return _one_line(type(exc).__name__)


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception, its causes, and urllib3's ``reason`` (how requests nests the socket error)."""
    seen: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo and len(seen) < 20:
        current = todo.pop()
        if any(current is s for s in seen):
            continue
        seen.append(current)
        yield current
        nested = [current.__cause__, current.__context__, getattr(current, "reason", None),
                  *(a for a in current.args if isinstance(a, BaseException))]
        todo.extend(n for n in nested if isinstance(n, BaseException))


def _one_line(text: str) -> str:
    return " ".join(text.split())
