"""Kannel's delivery reports: what its status values mean, and the route that records them.

Kannel calls the dlr-url each message carries (`sms_kannel.DlrCallback`):
`GET /dlr/kannel?challenge=<id>&ref=<provider ref>&token=<secret>&status=<bits>&message_id=<SMSC id>`.
The token is the URL's own: an HMAC of its challenge and reference under the deployment's secret
(`report_token`), so it proves that the URL is one we handed out, for that message only; a URL seen in
Kannel's logs or its DLR storage forges no report for any other message. The report is then recorded
through the State port,
whose record_delivery never lets a message move backwards (docs/decisions/0006), with the SMSC's own id
for the message when Kannel had one (its sendsms answer carries none: decision 0041).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Final
from urllib.parse import parse_qs

from sesame.clients.http_listener import Reply
from sesame.clients.sms_failover import UNOBSERVED, ProviderObserver
from sesame.clients.sms_reference import smsc_message_id
from sesame.server.domain.errors import ChallengeNotFound, StoreUnavailable
from sesame.server.domain.log_quota import LogQuota
from sesame.server.domain.model import DeliveryState
from sesame.server.domain.ports import Challenges, Clock
from sesame.server.domain.privacy import mask_challenge

_log = logging.getLogger("sesame.sms")

DLR_PATH: Final = "/dlr/kannel"

# Kannel's DLR types, one per report: 1 delivered to the phone, 2 not delivered to the phone, 4 buffered
# by the SMSC, 8 accepted by the SMSC, 16 rejected by the SMSC. Should several bits ever come together,
# the most final one tells.
_DELIVERED, _FAILED, _SENT = 1, 2 | 16, 4 | 8
_KNOWN: Final = _DELIVERED | _FAILED | _SENT
_FIELDS: Final = ("challenge", "ref", "status", "token")
# Optional: the SMSC's message id (`%F`), absent from the dlr-urls handed out before it was asked for.
_MESSAGE_ID: Final = "message_id"
# Challenge ids are `<hex>.k<N>.d<N>`, our references uuid hex; anything else was not made by us.
_ID: Final = re.compile(r"[0-9A-Za-z._-]{1,128}")
_STATUS: Final = re.compile(r"[0-9]{1,3}")
# A report taken (200) is logged at most once in this many seconds per state reported and per outcome (one
# of the two below), the next line counting those held back, as the SMPP receipts are: a dlr-url replayed
# 2000 times wrote 2000 INFO lines (an outside audit, Z3).
REPORT_LINE_EVERY_SECONDS: Final = 60.0
_MOVED: Final = "recorded as a {} report"
# Kannel's first `sent` report (status 8, the SMSC took it) moves nothing either: the send said SENT before.
_MOVED_NOTHING: Final = "a {} report that moved nothing (its message was there already)"


def report_token(secret: str, challenge_id: str, provider_ref: str) -> str:
    """The token of one message's dlr-url: HMAC-SHA256 under `secret` of its challenge and reference,
    URL-safe base64 without padding (43 characters, none that Kannel expands in a dlr-url)."""
    mac = hmac.new(secret.encode(), f"sesame-dlr\0{challenge_id}\0{provider_ref}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()


class MalformedReport(ValueError):
    """The report lacks a field, repeats one, or holds a value Sésame never puts in a dlr-url."""


def delivery_state(status: int) -> DeliveryState:
    """What a Kannel DLR type says about the message. MalformedReport for a value with no known bit, or
    with a bit Kannel never sets (999 read as delivered: an outside audit's)."""
    if status & ~_KNOWN:
        raise MalformedReport(f"unknown Kannel DLR status {status}")
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
    # Not an id (sms_reference.smsc_message_id): dropped, not the report: the delivery matters more.
    message_id = smsc_message_id(message_id)
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
    observer: ProviderObserver = UNOBSERVED  # told each report that moved its message: the metrics
    # By the state reported and the outcome (_MOVED, _MOVED_NOTHING).
    _lines: LogQuota[tuple[DeliveryState, str]] = field(
        default_factory=lambda: LogQuota(REPORT_LINE_EVERY_SECONDS), init=False, repr=False
    )

    async def receive(self, query: str) -> Reply:
        """403 for a missing or wrong token, 400 malformed, 404 unknown challenge, 503 store down, 200."""
        report = self._checked(query)
        if isinstance(report, Reply):
            return report
        try:
            moved = await self.challenges.record_delivery(
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
        # Counted only when it moved its message: Kannel retrying a report, or whoever replays a dlr-url,
        # must not read on the dashboard as more SMS delivered or failed.
        if moved:
            self.observer.reported("kannel", report.state)
        self._log(report, _MOVED if moved else _MOVED_NOTHING)
        return Reply(HTTPStatus.OK, "recorded")

    def _log(self, report: DeliveryReport, outcome: str) -> None:
        """One INFO line per state reported and `outcome` in REPORT_LINE_EVERY_SECONDS, the next counting
        those held back. It names the report, not the challenge's state, which moves forward only."""
        held_back = self._lines.admit((report.state, outcome))
        if held_back is not None:
            _log.info(
                "delivery report %s for %s: Kannel %d, %s%s",
                report.provider_ref,
                mask_challenge(report.challenge_id),
                report.status,
                outcome.format(report.state.value),
                self._lines.held_back(held_back, "such reports"),
            )

    def _checked(self, query: str) -> DeliveryReport | Reply:
        """The report the query carries once its token is checked, or the refusal to answer."""
        try:
            fields = parse_qs(
                query, keep_blank_values=True, strict_parsing=True, max_num_fields=len(_FIELDS) + 1
            )
        except ValueError:
            return Reply(HTTPStatus.BAD_REQUEST, "malformed query")
        try:
            if not self._authentic(fields):
                return Reply(HTTPStatus.FORBIDDEN, "bad token")
            return parse_report(fields)
        except MalformedReport as exc:
            return Reply(HTTPStatus.BAD_REQUEST, str(exc))

    def _authentic(self, fields: dict[str, list[str]]) -> bool:
        """Whether the report carries the token of its own challenge and reference: a token taken from one
        message's dlr-url authenticates no report on another message (nor the secret itself, which no URL
        carries). No secret set authenticates nothing (decision 0080). MalformedReport when the token is
        there and the challenge or the reference is missing or repeated."""
        tokens = fields.get("token", [])
        if not self.token or len(tokens) != 1:
            return False
        expected = report_token(self.token, _single(fields, "challenge"), _single(fields, "ref"))
        # Constant time: the comparison must not tell how much of a guessed token was right.
        return hmac.compare_digest(tokens[0].encode(), expected.encode())
