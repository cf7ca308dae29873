"""The email channel against a real local SMTP server (aiosmtpd in its own thread)."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from watchdog.shared.events import Event
from watchdog.notify.base import DeliveryFailed, Message
from watchdog.notify.email import Email, EmailNotification
from loopback import free_port

UTC = dt.timezone.utc
AT = dt.datetime(2024, 5, 1, 12, 0, 5, tzinfo=UTC)
USER, PASSWORD = "watchdog", "s3cret-Pa55word"
SENDER, TO = "watchdog@example.com", ["oncall@example.com", "sre@example.com"]


@dataclass
class Received:
    envelope: Any
    tls: bool
    authenticated: bool

    @property
    def mail(self) -> EmailMessage:
        return message_from_bytes(self.envelope.original_content, policy=policy.default)  # type: ignore[return-value]


@dataclass
class Recorder:
    """An aiosmtpd handler that keeps every accepted mail; `replies` turns a stage's answer into a refusal."""

    replies: dict[str, Callable[[str], str | None]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)

    async def handle_MAIL(self, server, session, envelope, address, options):
        return self._reply("MAIL", address) or self._accept(envelope, "mail_from", address, options)

    async def handle_RCPT(self, server, session, envelope, address, options):
        if reply := self._reply("RCPT", address):
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if reply := self._reply("DATA", ""):
            return reply
        tls = server.transport.get_extra_info("ssl_object") is not None
        self.received.append(Received(envelope, tls, bool(session.authenticated)))
        return "250 Message accepted"

    def _reply(self, stage: str, address: str) -> str | None:
        fn = self.replies.get(stage)
        return fn(address) if fn else None

    @staticmethod
    def _accept(envelope, attr, address, options) -> str:
        setattr(envelope, attr, address)
        envelope.mail_options.extend(options)
        return "250 OK"


@dataclass
class Pki:
    ca_file: Path
    server_ctx: ssl.SSLContext


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A throwaway CA and a server certificate for 127.0.0.1 and localhost signed by it."""
    d = tmp_path_factory.mktemp("pki")
    now = dt.datetime.now(UTC)

    def cert(subject: str, key, issuer: str, issuer_key, ca: bool, sans=None):
        b = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
        )
        if ca:
            b = b.add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        else:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False).add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
        return b.sign(issuer_key, hashes.SHA256())

    ca_key, srv_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = cert("test CA", ca_key, "test CA", ca_key, True)
    sans = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    srv = cert("localhost", srv_key, "test CA", ca_key, False, sans)
    pem = lambda c: c.public_bytes(serialization.Encoding.PEM)  # noqa: E731
    (d / "ca.pem").write_bytes(pem(ca))
    (d / "server.pem").write_bytes(pem(srv) + pem(ca))
    (d / "server.key").write_bytes(
        srv_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d / "server.pem", d / "server.key")
    return Pki(d / "ca.pem", ctx)


def _authenticator(server, session, envelope, mechanism, auth_data) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        USER.encode(), PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535 itself


@pytest.fixture
def smtp_server() -> Iterator[Callable[..., tuple[int, Recorder]]]:
    """Start aiosmtpd servers on free loopback ports; kwargs go to the Controller (and on to aiosmtpd's SMTP)."""
    started: list[Controller] = []

    def start(recorder: Recorder | None = None, **kwargs: Any) -> tuple[int, Recorder]:
        recorder = recorder or Recorder()
        port = free_port()
        ctl = Controller(recorder, hostname="127.0.0.1", port=port, **kwargs)
        ctl.start()
        started.append(ctl)
        return port, recorder

    yield start
    for ctl in started:
        ctl.stop()


@pytest.fixture
def secure_server(smtp_server, pki: Pki) -> tuple[int, Recorder]:
    """STARTTLS required, AUTH only after TLS, and no mail without AUTH."""
    return smtp_server(
        tls_context=pki.server_ctx, require_starttls=True, authenticator=_authenticator,
        auth_require_tls=True, auth_required=True,
    )


def _cfg(port: int, **kw: Any) -> EmailNotification:
    base: dict[str, Any] = dict(type="email", host="127.0.0.1", port=port, security="none", sender=SENDER, to=TO,
                                timeout=dt.timedelta(seconds=5))
    return EmailNotification(**(base | kw))


def _event(**kw: Any) -> Event:
    base: dict[str, Any] = dict(
        kind="incident_opened", severity="critical", target="checkout", incident="inc-7", level=1, at=AT,
        why="alarm: latency 2100 > 1500", next="running level 1 (rollback)",
        details={"trigger": {"latency": {"value": 2100.0, "threshold": "> 1500", "at": AT, "reason": "p99 over limit"}}},
    )
    return Event(**(base | kw))


def _msg(event: Event | None = None, *, id: int = 42, dry_run: bool = False, thread: str | None = None) -> Message:
    return Message(id=id, channel="email", event=event or _event(), dry_run=dry_run, thread=thread)


async def test_incident_opened_mail_says_what_why_and_next(smtp_server) -> None:
    port, rec = smtp_server()
    ch = Email(_cfg(port), None)
    assert ch.name == "email"

    thread = await ch.send(_msg())

    [got] = rec.received
    assert got.envelope.mail_from == SENDER
    assert got.envelope.rcpt_tos == TO
    mail = got.mail
    assert mail["Subject"] == "[rollback-watchdog] CRITICAL incident opened: checkout level 1 (inc-7)"
    assert mail["From"] == SENDER
    assert [a.addr_spec for a in mail["To"].addresses] == TO
    assert thread == mail["Message-ID"] and thread.endswith("@rollback-watchdog>")
    assert mail["In-Reply-To"] is None and mail["References"] is None
    assert abs(parsedate_to_datetime(mail["Date"]) - dt.datetime.now(UTC)) < dt.timedelta(minutes=1)
    assert mail.get_content_type() == "text/plain"
    lines = mail.get_content().splitlines()
    assert lines[0] == (
        "incident opened: checkout incident inc-7 level 1. Why: alarm: latency 2100 > 1500. "
        "Next: running level 1 (rollback)."
    )
    for expected in (
        "Target:   checkout", "Incident: inc-7", "Level:    1", "Severity: critical",
        "  latency: value 2100, threshold > 1500 at 12:00:05Z",
        "Why:  alarm: latency 2100 > 1500", "Next: running level 1 (rollback)",
        "rollback-watchdog, delivery id 42",
    ):
        assert expected in lines, expected
    assert lines.index("Target:   checkout") < lines.index("  latency: value 2100, threshold > 1500 at 12:00:05Z")
    assert not got.tls


async def test_dry_run_without_incident_is_marked_and_has_no_level_or_incident(smtp_server) -> None:
    port, rec = smtp_server()
    ev = _event(kind="would_run", severity="warning", incident=None, level=0, details={})
    await Email(_cfg(port, name="ops-mail"), None).send(_msg(ev, dry_run=True))

    mail = rec.received[0].mail
    assert mail["Subject"] == "[DRY RUN] [rollback-watchdog] WARNING would run: checkout"
    body = mail.get_content()
    assert body.startswith("[DRY RUN] would run: checkout. Why:")
    assert "Incident: -" in body and "Severity: warning (dry run)" in body and "Triggered by" not in body


async def test_a_reply_threads_under_the_first_message(smtp_server) -> None:
    port, rec = smtp_server()
    ch = Email(_cfg(port), None)

    first_id = await ch.send(_msg(id=1))
    assert first_id
    again = await ch.send(_msg(_event(kind="level_succeeded", severity="info"), id=2, thread=first_id))

    assert again is None  # the incident already has its thread
    first, reply = (r.mail for r in rec.received)
    assert first["Message-ID"] == first_id
    assert reply["In-Reply-To"] == first_id and reply["References"] == first_id
    assert reply["Message-ID"] != first_id


async def test_starttls_and_login_deliver(secure_server, pki: Pki) -> None:
    port, rec = secure_server
    cfg = _cfg(port, security="starttls", ca_file=pki.ca_file, username=USER, password=PASSWORD)

    assert await Email(cfg, None).send(_msg())

    [got] = rec.received
    assert got.tls and got.authenticated
    assert got.envelope.rcpt_tos == TO


async def test_wrong_password_is_permanent_and_never_quoted(secure_server, pki: Pki) -> None:
    port, rec = secure_server
    wrong = "hunter2-not-it"
    cfg = _cfg(port, security="starttls", ca_file=pki.ca_file, username=USER, password=wrong)

    with pytest.raises(DeliveryFailed) as info:
        await Email(cfg, None).send(_msg())

    assert info.value.permanent
    assert "535" in info.value.reason and "SMTPAuthenticationError" in info.value.reason
    for text in (info.value.reason, str(info.value), repr(info.value)):
        assert wrong not in text and PASSWORD not in text
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert rec.received == []


async def test_starttls_is_required_not_opportunistic(smtp_server, pki: Pki) -> None:
    port, rec = smtp_server()  # offers no STARTTLS
    with pytest.raises(DeliveryFailed) as info:
        await Email(_cfg(port, security="starttls", ca_file=pki.ca_file), None).send(_msg())
    assert info.value.permanent and "STARTTLS" in info.value.reason
    assert rec.received == []


async def test_an_untrusted_certificate_is_refused(smtp_server, pki: Pki) -> None:
    port, rec = smtp_server(tls_context=pki.server_ctx, require_starttls=True)
    with pytest.raises(DeliveryFailed) as info:
        await Email(_cfg(port, security="starttls"), None).send(_msg())  # system trust store: our CA is unknown
    assert not info.value.permanent
    assert "SSLCertVerificationError" in info.value.reason
    assert rec.received == []


async def test_implicit_tls_delivers(smtp_server, pki: Pki) -> None:
    port, rec = smtp_server(ssl_context=pki.server_ctx)
    await Email(_cfg(port, security="tls", ca_file=pki.ca_file), None).send(_msg())
    [got] = rec.received
    assert got.tls


async def test_security_none_sends_plain_even_when_starttls_is_offered(smtp_server, pki: Pki) -> None:
    # The client does not trust this certificate: an attempted STARTTLS would fail the delivery.
    port, rec = smtp_server(tls_context=pki.server_ctx)
    assert await Email(_cfg(port, security="none"), None).send(_msg())
    [got] = rec.received
    assert not got.tls and got.envelope.rcpt_tos == TO


async def test_refused_connection_is_retryable() -> None:
    port = free_port()  # nothing listens there
    with pytest.raises(DeliveryFailed) as info:
        await Email(_cfg(port), None).send(_msg())
    assert not info.value.permanent
    assert "SMTPConnectError" in info.value.reason and f"127.0.0.1:{port}" in info.value.reason


async def test_a_silent_server_times_out_retryably() -> None:
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never greets
        writer.close()

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        started = asyncio.get_running_loop().time()
        with pytest.raises(DeliveryFailed) as info:
            await Email(_cfg(port, timeout=dt.timedelta(seconds=0.3)), None).send(_msg())
        assert asyncio.get_running_loop().time() - started < 3
    finally:
        server.close()
        await server.wait_closed()
    assert not info.value.permanent and "timed out" in info.value.reason


@pytest.mark.parametrize(
    ("stage", "reply", "permanent", "code"),
    [
        ("MAIL", "553 5.7.1 sender not allowed", True, "553"),
        ("MAIL", "451 4.3.0 try again later", False, "451"),
        ("RCPT", "550 5.1.1 no such user", True, "550"),
        ("RCPT", "450 4.2.1 greylisted", False, "450"),
        ("DATA", "554 5.6.0 message rejected", True, "554"),
        ("DATA", "452 4.3.1 insufficient storage", False, "452"),
    ],
)
async def test_smtp_refusals_5xx_permanent_4xx_retryable(smtp_server, stage, reply, permanent, code) -> None:
    port, rec = smtp_server(Recorder(replies={stage: lambda _addr: reply}))
    with pytest.raises(DeliveryFailed) as info:
        await Email(_cfg(port), None).send(_msg())
    assert info.value.permanent is permanent
    assert code in info.value.reason
    assert rec.received == []


async def test_one_refused_recipient_does_not_fail_the_others(smtp_server) -> None:
    refuse = {"rcpt": lambda addr: "550 5.1.1 no such user" if addr == TO[1] else None}
    port, rec = smtp_server(Recorder(replies={"RCPT": refuse["rcpt"]}))
    # A retry would duplicate the mail for the recipient who got it: delivered is delivered.
    assert await Email(_cfg(port), None).send(_msg())
    [got] = rec.received
    assert got.envelope.rcpt_tos == TO[:1]
