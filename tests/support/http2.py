"""Raw HTTP/2 for the tests that speak it as an attacker would: frames, HPACK literals, the opening.

The server's frames are read only as far as a test needs (its SETTINGS, to acknowledge them); the header
blocks sent are literal fields without indexing and without Huffman, names and values under 127 bytes.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, CONTINUATION = 0x0, 0x1, 0x3, 0x4, 0x9
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
CANCEL = 0x8
INITIAL_WINDOW_SIZE = 0x4  # the SETTINGS parameter


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    """One frame."""
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def grpc_headers(path: str | bytes, authority: str, extra: tuple[tuple[bytes, bytes], ...] = ()) -> bytes:
    """The header block of a gRPC call of `path` (raw bytes, or text), with the `extra` headers (raw bytes:
    any octets HTTP/2 allows)."""
    fields = (
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", path if isinstance(path, bytes) else path.encode()),
        (b":authority", authority.encode()),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
        *extra,
    )
    return b"".join(
        b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value for name, value in fields
    )


def grpc_message(message: bytes) -> bytes:
    """A gRPC length-prefixed message, uncompressed."""
    return b"\x00" + struct.pack(">I", len(message)) + message


def opened(address: str, settings: dict[int, int] | None = None) -> socket.socket:
    """A connection to `address`: the preface and SETTINGS (`settings`, else none) sent, the server's SETTINGS
    read and acknowledged."""
    host, port = address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    payload = b"".join(struct.pack(">HI", key, value) for key, value in (settings or {}).items())
    sock.sendall(PREFACE + frame(SETTINGS, 0, 0, payload))
    buffer = b""
    deadline = time.monotonic() + 5
    sock.settimeout(5)
    while time.monotonic() < deadline:
        buffer += sock.recv(65536)
        while len(buffer) >= 9:
            length = int.from_bytes(buffer[:3], "big")
            if len(buffer) < 9 + length:
                break
            if buffer[3] == SETTINGS and not buffer[4] & ACK:
                sock.sendall(frame(SETTINGS, ACK, 0))
                return sock
            buffer = buffer[9 + length :]
    sock.close()
    raise AssertionError("no SETTINGS from the server")


def sent_and_drained(address: str, block: bytes, calls: int = 1) -> None:
    """`calls` gRPC calls with the header block `block`, an empty message each, on one new connection; what
    comes back is read until the connection is quiet for a second or closed (the answers' headers are
    HPACK-indexed: not counted)."""
    sock = opened(address)
    try:
        for n in range(calls):
            stream = 1 + 2 * n
            sock.sendall(
                frame(HEADERS, END_HEADERS, stream, block)
                + frame(DATA, END_STREAM, stream, grpc_message(b""))
            )
        drained(sock)
    finally:
        sock.close()


def drained(sock: socket.socket) -> bytes:
    """What comes back on `sock`, read until the connection is quiet for a second or closed."""
    sock.settimeout(1.0)
    read = bytearray()
    with contextlib.suppress(OSError):
        while chunk := sock.recv(65536):
            read += chunk
    return bytes(read)


def unacknowledged(address: str) -> socket.socket:
    """A connection to `address` whose client sends the preface and its SETTINGS and never acknowledges the
    server's: gRPC applies its header limits only once they are (an outside audit, AK1)."""
    host, port = address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    sock.sendall(PREFACE + frame(SETTINGS, 0, 0))
    return sock


def long_headers(path: str, authority: str, name: bytes, size: int) -> bytes:
    """The frames (HEADERS, then CONTINUATION as needed) of stream 1's call of `path` with a header `name`
    of `size` bytes, ending the headers; HPACK literals with their lengths in full integer form."""
    fields = (
        (b":method", b"POST"),
        (b":scheme", b"http"),
        (b":path", path.encode()),
        (b":authority", authority.encode()),
        (b"content-type", b"application/grpc"),
        (b"te", b"trailers"),
        (name, b"a" * size),
    )
    block = b"".join(b"\x00" + _length(len(k)) + k + _length(len(v)) + v for k, v in fields)
    chunks = [block[i : i + 16384] for i in range(0, len(block), 16384)]
    return b"".join(
        frame(HEADERS if n == 0 else CONTINUATION, END_HEADERS if n == len(chunks) - 1 else 0, 1, chunk)
        for n, chunk in enumerate(chunks)
    )


def _length(n: int) -> bytes:
    """An HPACK string length: a 7-bit prefix integer (RFC 7541, 5.1), no Huffman."""
    if n < 127:
        return bytes([n])
    out, n = [127], n - 127
    while n >= 128:
        out.append((n & 127) | 128)
        n >>= 7
    return bytes([*out, n])
