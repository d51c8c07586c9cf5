"""Kannel's delivery reports: what its status values mean, and the route that records them.

Kannel calls the dlr-url each message carries (`sms_kannel.DlrCallback`):
`GET /dlr/kannel?challenge=<id>&ref=<provider ref>&token=<secret>&status=<bits>&message_id=<SMSC id>`.
The token proves that the URL is one we handed out; the report is then recorded through the State port,
whose record_delivery never lets a message move backwards (docs/decisions/0006), with the SMSC's own id
for the message when Kannel had one (its sendsms answer carries none: decision 0041).
"""

from __future__ import annotations

import hmac
import logging
import re
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Final
from urllib.parse import parse_qs

from sesame.clients.http_listener import Reply
from sesame.clients.sms_failover import UNOBSERVED, ProviderObserver
from sesame.server.domain.errors import ChallengeNotFound, StoreUnavailable
from sesame.server.domain.model import DeliveryState
from sesame.server.domain.ports import Challenges, Clock

_log = logging.getLogger("sesame.sms")

DLR_PATH: Final = "/dlr/kannel"

# Kannel's DLR types, one per report: 1 delivered to the phone, 2 not delivered to the phone, 4 buffered
# by the SMSC, 8 accepted by the SMSC, 16 rejected by the SMSC. Should several bits ever come together,
# the most final one tells.
_DELIVERED, _FAILED, _SENT = 1, 2 | 16, 4 | 8
_FIELDS: Final = ("challenge", "ref", "status", "token")
# Optional: the SMSC's message id (`%F`), absent from the dlr-urls handed out before it was asked for.
_MESSAGE_ID: Final = "message_id"
# Challenge ids are `<hex>.k<N>.d<N>`, our references uuid hex; anything else was not made by us.
_ID: Final = re.compile(r"[0-9A-Za-z._-]{1,128}")
_STATUS: Final = re.compile(r"[0-9]{1,3}")
# An SMSC's message id: SMPP's is a C-octet string of up to 64 octets (hex or decimal in practice), the
# fake SMSC's a UUID. Anything else is dropped, not the report: the delivery matters more than the id.
_SMSC_ID: Final = re.compile(r"[0-9A-Za-z._:-]{1,64}")


class MalformedReport(ValueError):
    """The report lacks a field, repeats one, or holds a value Sésame never puts in a dlr-url."""


def delivery_state(status: int) -> DeliveryState:
    """What a Kannel DLR type says about the message. MalformedReport for a value with no known bit."""
    if status & _DELIVERED:
        return DeliveryState.DELIVERED
    if status & _FAILED:
        return DeliveryState.FAILED
    if status & _SENT:
        return DeliveryState.SENT
    raise MalformedReport(f"unknown Kannel DLR status {status}")


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """One report, checked: whose message it is, which message, and what happened to it."""

    challenge_id: str
    provider_ref: str
    status: int  # Kannel's own value, kept for the log
    state: DeliveryState
    message_id: str = ""  # the SMSC's own id for the message, "" when the report carries none


def parse_report(fields: dict[str, list[str]]) -> DeliveryReport:
    """The report a query carries. MalformedReport."""
    values = {name: _single(fields, name) for name in _FIELDS}
    if not (_ID.fullmatch(values["challenge"]) and _ID.fullmatch(values["ref"])):
        raise MalformedReport("challenge or ref is not one of ours")
    if not _STATUS.fullmatch(values["status"]):
        raise MalformedReport("status is not a number")
    status = int(values["status"])
    message_id = _single(fields, _MESSAGE_ID) if _MESSAGE_ID in fields else ""
    if not _SMSC_ID.fullmatch(message_id):
        message_id = ""
    return DeliveryReport(values["challenge"], values["ref"], status, delivery_state(status), message_id)


def _single(fields: dict[str, list[str]], name: str) -> str:
    found = fields.get(name, [])
    if len(found) != 1:
        raise MalformedReport(f"{name} must appear once")
    return found[0]


@dataclass(frozen=True, slots=True)
class KannelDeliveryReports:
    """The route of the DLR listener: token first, then the report, then one atomic record."""

    token: str = field(repr=False)
    challenges: Challenges
    clock: Clock
    observer: ProviderObserver = UNOBSERVED  # told each report once recorded: the metrics

    async def receive(self, query: str) -> Reply:
        """403 for a missing or wrong token, 400 malformed, 404 unknown challenge, 503 store down, 200."""
        try:
            fields = parse_qs(
                query, keep_blank_values=True, strict_parsing=True, max_num_fields=len(_FIELDS) + 1
            )
        except ValueError:
            return Reply(HTTPStatus.BAD_REQUEST, "malformed query")
        if not self._authentic(fields.get("token", [])):
            return Reply(HTTPStatus.FORBIDDEN, "bad token")
        try:
            report = parse_report(fields)
        except MalformedReport as exc:
            return Reply(HTTPStatus.BAD_REQUEST, str(exc))
        try:
            await self.challenges.record_delivery(
                report.challenge_id,
                report.state,
                report.provider_ref,
                self.clock.now(),
                provider_id=report.message_id,
            )
        except ChallengeNotFound:
            return Reply(HTTPStatus.NOT_FOUND, "no such challenge")
        except StoreUnavailable:
            return Reply(HTTPStatus.SERVICE_UNAVAILABLE, "try again later")
        self.observer.reported("kannel", report.state)
        _log.info(
            "delivery report %s for %s: Kannel %d, %s",
            report.provider_ref,
            report.challenge_id,
            report.status,
            report.state.value,
        )
        return Reply(HTTPStatus.OK, "recorded")

    def _authentic(self, tokens: list[str]) -> bool:
        # Constant time: the comparison must not tell how much of a guessed token was right. No token set
        # authenticates nothing: an empty `token=` is not the empty secret's match (decision 0080).
        return (
            bool(self.token)
            and len(tokens) == 1
            and hmac.compare_digest(tokens[0].encode(), self.token.encode())
        )
