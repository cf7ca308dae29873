"""Email over SMTP (aiosmtplib): one plain-text mail per event, threaded by incident.

The first mail of an incident returns its Message-ID; the outbox stores it and
hands it back as `Message.thread`, so later mails carry In-Reply-To/References
and mail clients show one conversation per incident.
"""

from __future__ import annotations

import ssl
from email import policy
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Annotated, Any, Literal

import structlog
from pydantic import Field, SecretStr, model_validator

from watchdog.config.notifications import Notification
from watchdog.shared.events import Severity
from watchdog.notify.base import ChannelKind, DeliveryFailed, Message, render_text, trigger_lines

log = structlog.get_logger("watchdog.notify.email")


class EmailNotification(Notification):
    type: Literal["email"]
    host: str = Field(min_length=1)
    port: int | None = Field(None, ge=1, le=65535)  # default by `security`: 587 starttls, 465 tls, 25 none
    security: Literal["starttls", "tls", "none"] = "starttls"
    ca_file: Path | None = None  # a CA bundle to trust for the server's certificate; default: the system store
    username: str | None = None
    password: SecretStr | None = None
    sender: str = Field(min_length=3, pattern=r"@")
    to: list[Annotated[str, Field(pattern=r"@")]] = Field(min_length=1)
    min_severity: Severity = "warning"

    @model_validator(mode="after")
    def _login_pair(self) -> "EmailNotification":
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        return self

    @property
    def smtp_port(self) -> int:
        return self.port or {"starttls": 587, "tls": 465, "none": 25}[self.security]


class Email:
    def __init__(self, cfg: EmailNotification, session: Any = None):
        self.cfg = cfg
        self.name = cfg.channel_name

    async def send(self, msg: Message) -> str | None:
        cfg = self.cfg
        mail = compose(cfg, msg)
        where = f"SMTP {cfg.host}:{cfg.smtp_port}"
        tls: ssl.SSLContext | None = None
        if cfg.security != "none":
            try:
                tls = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
            except (OSError, ssl.SSLError) as exc:  # an unreadable ca_file: a configuration error
                raise DeliveryFailed(f"{where}: cannot load ca_file ({type(exc).__name__})", permanent=True) from None
        username = password = None
        if cfg.username is not None and cfg.password is not None:
            username, password = cfg.username, cfg.password.get_secret_value()
        # Flattened here, not by aiosmtplib (always 78 columns): CPython folds a subject ending "(inc-7)" right
        # after "Subject:", which some parsers read with a leading space. 998 is SMTP's own line limit.
        utf8 = not all(a.isascii() for a in (cfg.sender, *cfg.to))
        wire = mail.as_bytes(policy=(policy.SMTPUTF8 if utf8 else policy.SMTP).clone(max_line_length=998))
        import aiosmtplib  # imported by the channel, not the module: a config without email never loads it

        try:
            refused, _ = await aiosmtplib.send(
                wire,
                sender=cfg.sender,
                recipients=cfg.to,
                mail_options=["SMTPUTF8"] if utf8 else None,
                hostname=cfg.host,
                port=cfg.smtp_port,
                use_tls=cfg.security == "tls",
                # False, not None: None means "STARTTLS if offered", which a stripped EHLO silently downgrades.
                start_tls=cfg.security == "starttls",
                tls_context=tls,
                timeout=cfg.timeout.total_seconds(),
                username=username,
                password=password,
            )
        except Exception as exc:
            raise _failure(where, exc) from None  # `from None`: a chained traceback could quote the AUTH exchange
        if refused:
            # Some recipients took it: a retry would send them a duplicate, so only say who missed it.
            log.warning("email_recipients_refused", channel=self.name, delivery=msg.id,
                        refused={rcpt: r.code for rcpt, r in refused.items()})
        return str(mail["Message-ID"]) if msg.thread is None else None

    async def close(self) -> None:
        return None  # one SMTP connection per mail: events are rare, and servers drop idle sessions anyway


def compose(cfg: EmailNotification, msg: Message) -> EmailMessage:
    ev = msg.event
    subject = f"[rollback-watchdog] {ev.severity.upper()} {ev.kind.replace('_', ' ')}: {ev.target}"
    subject += (f" level {ev.level}" if ev.level else "") + (f" ({ev.incident})" if ev.incident else "")
    if msg.dry_run:
        subject = "[DRY RUN] " + subject
    mail = EmailMessage()
    mail["From"] = cfg.sender
    mail["To"] = ", ".join(cfg.to)
    mail["Subject"] = " ".join(subject.split())  # no CR/LF from a target or incident name into the headers
    mail["Date"] = formatdate(usegmt=True)
    mail["Message-ID"] = make_msgid(domain="rollback-watchdog")
    if msg.thread:
        mail["In-Reply-To"] = msg.thread
        mail["References"] = msg.thread
    mail["X-Rollback-Watchdog-Delivery"] = str(msg.id)
    lines = [
        render_text(ev, msg.dry_run),
        "",
        f"Target:   {ev.target}",
        f"Incident: {ev.incident or '-'}",
        f"Level:    {ev.level}",
        f"Severity: {ev.severity}{' (dry run)' if msg.dry_run else ''}",
        f"At:       {ev.at.isoformat()}",  # delivery can lag the event by retries
    ]
    triggers = trigger_lines(ev)
    if triggers:
        lines += ["", "Triggered by:"] + [f"  {t}" for t in triggers]
    lines += ["", f"Why:  {ev.why}", f"Next: {ev.next}", "", "-- ", f"rollback-watchdog, delivery id {msg.id}"]
    mail.set_content("\n".join(lines) + "\n")
    return mail


def _failure(where: str, exc: Exception) -> DeliveryFailed:
    """Only codes and exception types go in the reason: SMTP replies can echo what the client sent."""
    import aiosmtplib  # loaded by `send` already

    kind = type(exc).__name__
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = sorted({r.code for r in exc.recipients})
        # Any 4xx (greylisting, full mailbox) may pass later; all-5xx will not.
        return DeliveryFailed(f"{where}: all recipients refused {codes} ({kind})", permanent=min(codes, default=500) >= 500)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        temporary = 400 <= exc.code < 500  # e.g. 421 shutting down, 451 try later, 454 auth backend down
        permanent = not temporary if isinstance(exc, aiosmtplib.SMTPAuthenticationError) else exc.code >= 500
        return DeliveryFailed(f"{where} answered {exc.code} ({kind})", permanent=permanent)
    if isinstance(exc, OSError):  # ConnectionError, TimeoutError, SSL errors: the network, maybe better later
        cause = f", {type(exc.__cause__).__name__}" if exc.__cause__ else ""
        return DeliveryFailed(f"{where}: {'timed out' if isinstance(exc, TimeoutError) else 'connection failed'} ({kind}{cause})")
    if isinstance(exc, aiosmtplib.SMTPException):
        # No STARTTLS or no AUTH offered: the server does not do what the config requires; retrying will not change it.
        return DeliveryFailed(f"{where}: {exc.message} ({kind})", permanent=True)
    return DeliveryFailed(f"{where}: {kind}")


KIND = ChannelKind(type="email", config=EmailNotification, build=Email)
