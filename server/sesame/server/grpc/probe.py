"""`sesame health`: ask a running server's grpc.health.v1 whether it serves (for Docker and exec probes)."""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2

# The typing stubs of grpc_health's HealthStub declare no methods: call the method by its path instead.
_CHECK = "/grpc.health.v1.Health/Check"


def check_health(target: str, service: str = "", timeout: float = 3.0) -> str:
    """The status name the server reports for `service` ("" is the server as a whole).

    A server that does not answer within `timeout` reads UNREACHABLE; one that does not know the service
    reads SERVICE_UNKNOWN. Only SERVING means the server can take calls.
    """
    with grpc.insecure_channel(target) as channel:
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
