"""Mail over TLS to a real SMTP server (aiosmtpd) on loopback: STARTTLS and implicit TLS,
with a certificate of a private authority made for the test (``trustme``) that the client
verifies through ``smtp_ca_file``."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import trustme

from llmledger.alerts import test_messages as make_test_messages
from llmledger.core.errors import NotificationError
from llmledger.core.settings import load_settings
from llmledger.notify import send
from tests.alerting_support import smtp_server


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_tls(authority: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture
def ca_file(authority: trustme.CA, tmp_path: Path) -> Iterator[str]:
    path = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(path))
    yield str(path)


def _send(port: int, security: str, **settings: Any) -> str:
    message = make_test_messages(("email:ops@example.com",), datetime.now(UTC), "TLS check")[0]
    send(
        message,
        load_settings(smtp_host="127.0.0.1", smtp_port=port, smtp_security=security, **settings),
    )
    return message.id


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_mail_goes_over_tls_to_a_server_the_ca_file_vouches_for(
    server_tls: ssl.SSLContext, ca_file: str, security: str
) -> None:
    with smtp_server(server_tls, implicit=security == "tls") as (port, mailbox):
        delivery = _send(port, security, smtp_ca_file=ca_file)
    assert [mail["X-Llmledger-Delivery"] for mail in mailbox.mails] == [delivery]
    assert mailbox.encrypted == [True]


@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_a_server_certificate_no_trusted_authority_signed_is_refused(
    server_tls: ssl.SSLContext, tmp_path: Path, security: str
) -> None:
    stranger = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(stranger))
    with smtp_server(server_tls, implicit=security == "tls") as (port, mailbox):
        for settings in ({}, {"smtp_ca_file": str(stranger)}):
            with pytest.raises(NotificationError, match="CERTIFICATE_VERIFY_FAILED"):
                _send(port, security, **settings)
    assert mailbox.mails == []


def test_starttls_is_required_when_the_server_offers_it(server_tls: ssl.SSLContext) -> None:
    """The server refuses mail before STARTTLS: security ``none`` cannot send to it."""
    with smtp_server(server_tls) as (port, mailbox), pytest.raises(NotificationError):
        _send(port, "none")
    assert mailbox.mails == []
