"""What an SMSC's command_status on a submit_sm_resp means for the message (SMPP 3.4 §5.1.3).

Some say the SMSC did not take the message for now (throttled, queue full, system error): the same SMSC
may be asked again after a pause. Some are its final word on the number or the text. The rest refuse the
message for a reason of the account or the SMSC; none of them is retried at the same SMSC.
"""

from __future__ import annotations

from typing import Final

from sesame.server.domain.errors import DeliveryFailure

ESME_RINVMSGLEN: Final = 0x01
ESME_RINVBNDSTS: Final = 0x04  # not bound (yet): the SMSC took nothing
ESME_RSYSERR: Final = 0x08
ESME_RINVDSTADR: Final = 0x0B
ESME_RMSGQFUL: Final = 0x14
ESME_RINVNUMDESTS: Final = 0x33
ESME_RINVESMCLASS: Final = 0x43
ESME_RINVDSTTON: Final = 0x50
ESME_RINVDSTNPI: Final = 0x51
ESME_RTHROTTLED: Final = 0x58
ESME_RX_T_APPN: Final = 0x64
ESME_RINVOPTPARAMVAL: Final = 0xC4

_REASONS: Final[dict[int, DeliveryFailure]] = {
    ESME_RTHROTTLED: "throttled",
    ESME_RMSGQFUL: "unavailable",
    ESME_RSYSERR: "unavailable",
    ESME_RX_T_APPN: "unavailable",
    ESME_RINVBNDSTS: "unavailable",
    ESME_RINVDSTADR: "bad_number",
    ESME_RINVDSTTON: "bad_number",
    ESME_RINVDSTNPI: "bad_number",
    ESME_RINVNUMDESTS: "bad_number",
    ESME_RINVMSGLEN: "bad_content",
    ESME_RINVESMCLASS: "bad_content",
    ESME_RINVOPTPARAMVAL: "bad_content",
}


def refusal(command_status: int) -> DeliveryFailure:
    """The kind of failure a submit_sm_resp's error status is: `refused` for any not listed above."""
    return _REASONS.get(command_status, "refused")


# What a bind_transceiver_resp may refuse with for our account (§5.1.3): the system_id or password wrong, or
# the SMSC's catch-all for a refused bind (which some SMSCs also answer while an earlier session of the same
# account is still bound on their side). None of them clears within seconds: retried slower (decision 0117).
ESME_RBINDFAIL: Final = 0x0D
ESME_RINVPASWD: Final = 0x0E
ESME_RINVSYSID: Final = 0x0F
BIND_CREDENTIALS: Final = {
    ESME_RBINDFAIL: "ESME_RBINDFAIL",
    ESME_RINVPASWD: "ESME_RINVPASWD",
    ESME_RINVSYSID: "ESME_RINVSYSID",
}
