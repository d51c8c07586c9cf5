"""`sesame health`: ask a running server's grpc.health.v1 whether it serves (for Docker and exec probes)."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from grpc_health.v1 import health_pb2

# The typing stubs of grpc_health's HealthStub declare no methods: call the method by its path instead.
_CHECK = "/grpc.health.v1.Health/Check"


@dataclass(frozen=True, slots=True)
class ClientTls:
    """What the probe presents to a TLS port: CA to verify it (None: system roots), its own certificate."""

    ca: bytes | None = None
    cert_chain: bytes | None = None
    private_key: bytes | None = field(default=None, repr=False)
    server_name: str | None = None  # the name to expect in the server's certificate (default: the host)


def check_health(target: str, service: str = "", timeout: float = 3.0, tls: ClientTls | None = None) -> str:
    """The status name the server reports for `service` ("" is the server as a whole).

    Plaintext unless `tls` is given. A server that does not answer within `timeout` (or whose handshake
    fails) reads UNREACHABLE; one that does not know the service reads SERVICE_UNKNOWN. Only SERVING
    means the server can take calls.
    """
    with client_channel(target, tls) as channel:
        check = channel.unary_unary(
            _CHECK,
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        try:
            reply = check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as error:
            code = error.code() if isinstance(error, grpc.Call) else None
            return "SERVICE_UNKNOWN" if code is grpc.StatusCode.NOT_FOUND else "UNREACHABLE"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)


def client_channel(
    target: str, tls: ClientTls | None, receive_bytes: int | None = None, *, own_connection: bool = False
) -> grpc.Channel:
    """A blocking channel to `target`: plaintext, or TLS (with a client certificate) as `tls` says; answers up
    to `receive_bytes` each (None: gRPC's default, 4 MiB); on a connection of its own when `own_connection`
    (gRPC otherwise shares one between the channels of a process to one target)."""
    options: list[tuple[str, str | int]] = []
    if own_connection:
        options.append(("grpc.use_local_subchannel_pool", 1))
    if receive_bytes is not None:
        options.append(("grpc.max_receive_message_length", receive_bytes))
    if tls is None:
        return grpc.insecure_channel(target, options=options)
    credentials = grpc.ssl_channel_credentials(tls.ca, tls.private_key, tls.cert_chain)
    if tls.server_name is not None:
        options.append(("grpc.ssl_target_name_override", tls.server_name))
    return grpc.secure_channel(target, credentials, options=options)
