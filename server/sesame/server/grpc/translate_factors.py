"""The first factor a caller asserts (StartChallenge, VerifyChallenge) to its domain value (decision 0035).

Its shape is checked here, every field at once with the rest of the request; its age needs the clock and is
checked by the flow (`factors.check_age`), before anything is written.
"""

from __future__ import annotations

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.server.domain import factors
from sesame.server.domain.errors import FieldViolation
from sesame.server.domain.factors import FactorCategory, FirstFactor
from sesame.server.grpc.fields import Fields, bounded, instant

_CATEGORY = {
    auth_pb.FACTOR_CATEGORY_KNOWLEDGE: FactorCategory.KNOWLEDGE,
    auth_pb.FACTOR_CATEGORY_POSSESSION: FactorCategory.POSSESSION,
    auth_pb.FACTOR_CATEGORY_INHERENCE: FactorCategory.INHERENCE,
}


def first_factor(
    fields: Fields, request: auth_pb.StartChallengeRequest | auth_pb.VerifyChallengeRequest
) -> FirstFactor | None:
    """The request's first factor, None when it names none; each bad field remembered in `fields`."""
    if not request.HasField("first_factor"):
        return None
    message = request.first_factor
    category = _CATEGORY.get(message.category)
    if message.category == auth_pb.FACTOR_CATEGORY_UNSPECIFIED:
        fields.missing("first_factor.category")
    elif category is None:  # a number past the enum: a newer or a wrong caller, told what this server knows
        known = ", ".join(auth_pb.FactorCategory.Name(number) for number in _CATEGORY)
        fields.violations.append(
            FieldViolation("first_factor.category", f"{message.category} is not one of {known}")
        )
    method = factors.METHODS.get(message.method)
    if method is None:
        listed = ", ".join(factors.METHODS)
        fields.violations.append(FieldViolation("first_factor.method", f"must be one of {listed}"))
    elif category is not None and method.category is not category:
        fields.violations.append(
            FieldViolation("first_factor.category", f"must be {method.category.value} for {message.method}")
        )
    verified_at = None
    if not message.HasField("verified_at"):
        fields.missing("first_factor.verified_at")
    else:
        verified_at = fields.check("first_factor.verified_at", instant, message.verified_at)
    reference = fields.check("first_factor.reference", bounded(factors.MAX_REFERENCE), message.reference)
    if category is None or method is None or verified_at is None:
        return None  # reported: raise_if_any() raises before this value is used
    return FirstFactor(category, message.method, verified_at, reference)
