"""Whom a call is about, for its log lines, when only the flow learns it (a challenge names its user).

The RPC interceptor binds the masked user when the request names one; a flow addressed by challenge id
calls `about_user` once it has read the challenge, so that the lines that follow, the refusal and the
line that closes the call included, carry the masked user too. Bound for the call's task only.
"""

from __future__ import annotations

import structlog

from sesame.server.domain.privacy import mask_user


def about_user(user_id: str) -> None:
    """The rest of this call's log lines name `user_id`, masked."""
    structlog.contextvars.bind_contextvars(user=mask_user(user_id))
