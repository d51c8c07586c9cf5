"""`KannelSmsGateway`: the SmsGateway port on Kannel's HTTP `sendsms` interface (docs/decisions/0006).

One GET per message. The query holds the sendsms password and the text holds the code, so neither the URL
nor the text ever reaches an exception or a log: failures name the class of problem only, and httpx's
own request log (which prints the URL) is silenced.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import logging
import math
import re
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlencode

import httpx

from sesame.clients.kannel_dlr import DLR_PATH, report_token
from sesame.clients.sms_reference import provider_ref
from sesame.server.domain.errors import DeliveryFailed, DeliveryFailure
from sesame.server.domain.gsm7 import fits_gsm7
from sesame.server.domain.model import SentSms, SmsMessage
from sesame.server.domain.ports import Clock, SmsGateway
from sesame.server.domain.privacy import mask_challenge, mask_phone, redact

_log = logging.getLogger("sesame.sms")

ANSWER_LIMIT: Final = 1024  # bytes of Kannel's answer we read: "0: Accepted for delivery" fits many times
# Kannel answers 202 with "0: Accepted for delivery", or "3: Queued for later delivery" while no SMSC is
# connected (the message goes, with its reports, once one is); a proxy in front may turn the 202 into another
# 2xx (decision 0155).
_ACCEPTED: Final = ("0:", "3:")
_QUEUED: Final = "3:"  # taken, held until an SMSC connects: told apart (decision 0124)
_ALL_REPORTS: Final = "31"  # dlr-mask: delivered 1, failed 2, buffered 4, accepted by SMSC 8, rejected 16
_UCS2: Final = "2"
# Kannel's own answers are one short sentence ("Authorization failed for sendsms", "Invalid receiver
# number"): what else a proxy or a firewall answers may echo the request, password and all (an outside
# audit), or carry line breaks that forge log lines. Only a line of these characters is logged.
_KANNEL_WORDS: Final = re.compile(r"[A-Za-z0-9 :.,;'()/-]{1,80}")


@dataclass(frozen=True, slots=True)
class DlrCallback:
    """Where Kannel reports deliveries, and the secret whose MAC of each message's challenge and reference
    is that message's token (`kannel_dlr.report_token`): the report comes from the URL we gave for it.

    Kannel expands `%X` escapes in the URL (`%d` is the status), so `base_url` and `token` must hold no
    `%`: the settings accept URL-safe tokens only, which urlencode leaves as they are.
    """

    base_url: str  # e.g. http://10.0.0.5:9465, the path is appended
    token: str = field(repr=False)

    def token_for(self, challenge_id: str, provider_ref: str) -> str:
        """The token of the dlr-url of one message: its own, valid for its reports only."""
        return report_token(self.token, challenge_id, provider_ref)

    def url(self, challenge_id: str, provider_ref: str) -> str:
        """The dlr-url of one message; Kannel fills `status` in, and `message_id` with the SMSC's own id
        for the message (`%F`: empty in a report that comes before the SMSC gave one, as status 8 does)."""
        token = self.token_for(challenge_id, provider_ref)
        query = urlencode({"challenge": challenge_id, "ref": provider_ref, "token": token})
        return f"{self.base_url.rstrip('/')}{DLR_PATH}?{query}&status=%d&message_id=%F"


@dataclass(frozen=True, slots=True)
class KannelConfig:
    """Kannel's sendsms interface and how Sésame uses it; the password never shows in a repr."""

    url: str  # the smsbox, e.g. http://127.0.0.1:13013
    username: str
    password: str = field(repr=False)
    sender: str  # the bank's alphanumeric sender id
    timeout: float = 5.0  # seconds for the whole request: connect, send, answer
    dlr: DlrCallback | None = None  # None: no delivery reports are asked for


def sendsms_params(config: KannelConfig, message: SmsMessage, provider_ref: str) -> dict[str, str]:
    """The sendsms query of one message."""
    params = {
        "username": config.username,
        "password": config.password,
        "from": config.sender,
        # E.164 with its '+': Kannel's SMPP client strips it and sets the international type of number.
        "to": message.to,
        "text": message.text,
    }
    if message.valid_for is not None:
        # Minutes the SMSC may keep trying (Kannel's `validity`): not past the code's life (decision 0123).
        params["validity"] = str(max(1, math.ceil(message.valid_for.total_seconds() / 60)))
    if not fits_gsm7(message.text):
        # UCS-2; Kannel would read the text as UTF-16BE without the charset.
        params |= {"coding": _UCS2, "charset": "UTF-8"}
    # A notice belongs to no challenge: its report would have nowhere to go.
    if config.dlr is not None and message.challenge_id:
        params |= {"dlr-mask": _ALL_REPORTS, "dlr-url": config.dlr.url(message.challenge_id, provider_ref)}
    return params


def refusal(status: int, text: str) -> DeliveryFailure:
    """What kind of failure Kannel's answer other than accepted or queued is (docs/decisions/0030).

    5xx: smsbox or bearerbox could not take the message now (`Sending failed`, queue full): nothing was
    queued, so Kannel may be asked again. 504, which Kannel never answers, is a proxy's in front of it: it
    forwarded the request and Kannel did not answer in time, so Kannel may have taken the message, as on
    our own timeout (never asked again there). 429: throttled. 400: the request was wrong, about the number
    (`Missing receiver number`, `Invalid receiver`) or else the text. Anything else (403 for the account,
    a black list) refuses the message for good at this provider. A 2xx other than Kannel's own answer (a
    proxy's `200 0: Accepted for delivery`, a `202 OK`) says something took the message, in words we cannot
    read: `lost`, as a connection lost after the request: the phone may have the code, so this provider is
    not asked again at once and the dead letter reads `unconfirmed`, not `refused` (decisions 0096, 0097,
    0155).
    """
    if httpx.codes.is_success(status):
        return "lost"
    if status == httpx.codes.TOO_MANY_REQUESTS:
        return "throttled"
    if status == httpx.codes.GATEWAY_TIMEOUT:
        return "timeout"
    if status >= httpx.codes.INTERNAL_SERVER_ERROR:
        return "unavailable"
    if status == httpx.codes.BAD_REQUEST:
        return "bad_number" if "receiver" in text.lower() or "number" in text.lower() else "bad_content"
    return "refused"


@dataclass(frozen=True, slots=True)
class _Answer:
    """Kannel's HTTP status and the start of its answer (text/plain or text/html, one line)."""

    status: int
    text: str


class KannelSmsGateway:
    """Sends each message with one sendsms GET over a client kept for the life of the process."""

    def __init__(self, config: KannelConfig, clock: Clock) -> None:
        """Prepare the HTTP client (no connection is made before the first send)."""
        self._config = config
        self._clock = clock
        self._sendsms = f"{config.url.rstrip('/')}/cgi-bin/sendsms"
        # httpx logs every request's URL at INFO: ours carries the password and the code.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(config.timeout),
            follow_redirects=False,
            # No proxy from the environment: the password goes to Kannel and nowhere else.
            trust_env=False,
            headers={"User-Agent": "sesame", "Accept-Encoding": "identity"},
            # No cookie kept: Kannel sets none, and a peer that set one per answer grew every request's
            # head until each failed, for the life of the worker (an outside audit).
            cookies=http.cookiejar.CookieJar(http.cookiejar.DefaultCookiePolicy(allowed_domains=[])),
        )

    async def close(self) -> None:
        """Close the connections (on shutdown)."""
        await self._client.aclose()

    async def send(self, message: SmsMessage) -> SentSms:
        """Hand the message to Kannel; DeliveryFailed unless Kannel accepted or queued it."""
        ref = provider_ref("kannel", message)
        sent_at = self._clock.now()
        query = urlencode(sendsms_params(self._config, message, ref))
        answer = await self._get(f"{self._sendsms}?{query}")
        if not (httpx.codes.is_success(answer.status) and answer.text.startswith(_ACCEPTED)):
            # One line per message at INFO, like a send; the WARNING that alerts is rate-limited, per reason
            # (`sesame.server.sms_watch`).
            reason = refusal(answer.status, answer.text)
            said = "gave an answer that is not its own to" if reason == "lost" else "refused"
            _log.info(
                "Kannel %s the SMS for %s: HTTP %d %s",
                said,
                mask_challenge(message.challenge_id),
                answer.status,
                self._shown(answer.text),
            )
            raise DeliveryFailed(f"Kannel {said} the message (HTTP {answer.status})", reason)
        # The text (payee, amount) stays out of INFO lines; DEBUG shows it with the code hidden.
        queued = answer.text.startswith(_QUEUED)
        _log.info(
            "SMS %s %s Kannel to %s for %s",
            ref,
            "queued by (no SMSC connected)" if queued else "via",
            mask_phone(message.to),
            mask_challenge(message.challenge_id),
        )
        _log.debug("SMS %s text: %s", ref, redact(message.text))
        return SentSms(provider_ref=ref, sent_at=sent_at, queued=queued)

    def _shown(self, text: str) -> str:
        """The first line of an answer as the log may show it: Kannel's own words, digits hidden; else its
        length only (an echo of the request holds the password)."""
        line = text.partition("\n")[0].strip()
        secrets = (self._config.password, self._config.username)
        if _KANNEL_WORDS.fullmatch(line) and not any(secret and secret in line for secret in secrets):
            return redact(line)
        return f"(an answer of {len(text)} characters, not Kannel's words: not shown)"

    async def _get(self, url: str) -> _Answer:
        # `from None` everywhere: httpx's exceptions hold the request, whose URL holds the password.
        writing = _Writing()
        try:
            async with asyncio.timeout(self._config.timeout):
                return await self._fetch(url, writing)
        except (httpx.ConnectError, httpx.ConnectTimeout):
            # No connection, so no request: Kannel got nothing.
            raise DeliveryFailed("Kannel is unreachable", "unreachable") from None
        except (TimeoutError, httpx.TimeoutException):
            if not writing.began:
                # The time ran out on the connection (a host that drops packets): no request left, Kannel
                # got nothing. Read `timeout` ("Kannel may have sent it"), it was never tried again and the
                # journal said the phone may have the code (an outside audit).
                raise DeliveryFailed("Kannel is unreachable (no connection in time)", "unreachable") from None
            raise DeliveryFailed("Kannel did not answer in time", "timeout") from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError):
            # The request may have reached smsbox: whether Kannel took the message is unknown.
            raise DeliveryFailed("Kannel connection lost", "lost") from None
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"Kannel sendsms failed: {type(exc).__name__}") from None

    async def _fetch(self, url: str, writing: _Writing) -> _Answer:
        async with self._client.stream("GET", url, extensions={"trace": writing}) as response:
            body = bytearray()
            async for chunk in response.aiter_raw():
                body += chunk
                if len(body) >= ANSWER_LIMIT:
                    break
            return _Answer(response.status_code, body[:ANSWER_LIMIT].decode("utf-8", "replace"))


class _Writing:
    """Whether the request began to go out (httpcore's trace of a request): before it, Kannel got nothing."""

    __slots__ = ("began",)

    def __init__(self) -> None:
        self.began = False

    async def __call__(self, event: str, _info: dict[str, Any]) -> None:
        if event.endswith(".send_request_headers.started"):
            self.began = True


_: type[SmsGateway] = KannelSmsGateway
