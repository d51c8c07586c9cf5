"""The bound on a call's headers counts them as gRPC counts them once SETTINGS are acknowledged (AK1, AO2)."""

from __future__ import annotations

from typing import NamedTuple

import pytest

from sesame.server.grpc.header_bound import oversized

GET_USER = "/sesame.api.v1.EnrollmentService/GetUser"


class Details(NamedTuple):
    """grpc.HandlerCallDetails as an interceptor is given it."""

    method: str
    invocation_metadata: tuple[tuple[str, str | bytes], ...]


@pytest.mark.parametrize(
    ("metadata", "refused"),
    [
        ((("x-big", "a" * 7_800),), False),
        ((("x-big", "a" * 7_840),), True),  # 8,200 octets as HTTP/2 counts them: gRPC refuses it acked
        ((("x-data-bin", b"\x00" * 5_800),), False),
        # 6,000 bytes are 8,000 of base64 on the wire: gRPC counts those (it was counted 6,000, and served).
        ((("x-data-bin", b"\x00" * 6_000),), True),
        (tuple((f"x-h{n}", "v") for n in range(230)), True),  # many small ones: 32 octets each besides
    ],
)
def test_headers_are_counted_as_http2_counts_them(
    metadata: tuple[tuple[str, str | bytes], ...],
    refused: bool,  # noqa: FBT001 (a parameter of the case)
) -> None:
    assert oversized(Details(GET_USER, metadata)) is refused  # type: ignore[arg-type]
