"""The grpc.aio server: our two services, health (watched), reflection, the error interceptor."""

from __future__ import annotations

from collections.abc import Mapping

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.server.domain.challenges import ChallengeFlows
from sesame.server.domain.enrollment import EnrollmentFlows
from sesame.server.domain.ports import Clock, Probe
from sesame.server.grpc.health import HealthWatcher
from sesame.server.grpc.metering import MetricsInterceptor
from sesame.server.grpc.servicers import AuthenticationServicer, EnrollmentServicer
from sesame.server.grpc.status import ErrorInterceptor
from sesame.server.metrics import Metrics

SERVICE_NAMES = (
    auth_pb.DESCRIPTOR.services_by_name["AuthenticationService"].full_name,
    enrol_pb.DESCRIPTOR.services_by_name["EnrollmentService"].full_name,
)

# Our largest request (a transfer with every field at its maximum) is under 2 KiB: a 64 KiB cap refuses
# oversized messages before they are parsed, instead of gRPC's default of 4 MiB.
MAX_MESSAGE_BYTES = 64 * 1024
_OPTIONS = (("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),)


class GrpcServer:
    """A started server, the port it listens on (0 in the address picks a free one), its health watcher."""

    def __init__(self, server: grpc.aio.Server, port: int, health_watcher: HealthWatcher) -> None:
        self.server = server
        self.port = port
        self.health = health_watcher

    @classmethod
    async def start(  # noqa: PLR0913 (keyword-only: the flows, and what health watches and how often)
        cls,
        address: str,
        *,
        challenges: ChallengeFlows,
        enrollment: EnrollmentFlows,
        clock: Clock,
        probes: Mapping[str, Probe],
        health_interval: float,
        metrics: Metrics,
    ) -> GrpcServer:
        """Bind `address`, register everything, start serving; health follows `probes`."""
        server = grpc.aio.server(
            # Metrics outermost, so that they see the status the error interceptor chose.
            interceptors=[MetricsInterceptor(metrics), ErrorInterceptor()],
            options=_OPTIONS,
        )
        auth_grpc.add_AuthenticationServiceServicer_to_server(
            AuthenticationServicer(challenges, clock), server
        )
        enrol_grpc.add_EnrollmentServiceServicer_to_server(EnrollmentServicer(enrollment, clock), server)
        health_servicer = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        reflection.enable_server_reflection(
            (
                *SERVICE_NAMES,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ),
            server,
        )
        watcher = HealthWatcher(health_servicer, ("", *SERVICE_NAMES), probes, interval=health_interval)
        # One round before the port opens: the first Check a balancer sends already tells the truth.
        await watcher.check_now()
        port = server.add_insecure_port(address)
        await server.start()
        watcher.start()
        return cls(server, port, watcher)

    async def stop(self, grace: float) -> None:
        """Drain: report NOT_SERVING, refuse new calls, let calls in flight finish within `grace`."""
        await self.health.enter_graceful_shutdown()
        await self.health.stop()
        await self.server.stop(grace)
