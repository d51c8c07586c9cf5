"""The RPCs this server answers, by service: what a caller policy may name, and the one open service."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import evidence_service_pb2 as evidence_pb

_AUTHENTICATION = auth_pb.DESCRIPTOR.services_by_name["AuthenticationService"]
_ENROLLMENT = enrol_pb.DESCRIPTOR.services_by_name["EnrollmentService"]
_EVIDENCE = evidence_pb.DESCRIPTOR.services_by_name["EvidenceService"]
_REFLECTION = reflection_pb2.DESCRIPTOR.services_by_name["ServerReflection"]

# Our own services, in the order health publishes them.
API_SERVICES: Final = (_AUTHENTICATION.full_name, _ENROLLMENT.full_name, _EVIDENCE.full_name)
REFLECTION_SERVICE: Final = _REFLECTION.full_name

# Health answers every caller that completed the handshake: probes and balancers hold no grant, and a
# status says nothing a caller could use.
HEALTH_SERVICE: Final = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name


# What a policy grants: every service but health, reflection included (it is granted like any RPC).
GOVERNED: Final[Mapping[str, frozenset[str]]] = {
    service.full_name: frozenset(method.name for method in service.methods)
    for service in (_AUTHENTICATION, _ENROLLMENT, _EVIDENCE, _REFLECTION)
}
