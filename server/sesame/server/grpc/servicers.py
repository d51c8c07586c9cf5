"""The gRPC servicers: translate the request, call one flow, translate the result. Nothing else."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import authentication_service_pb2_grpc as auth_grpc
from sesame.api.v1 import enrollment_service_pb2 as enrol_pb
from sesame.api.v1 import enrollment_service_pb2_grpc as enrol_grpc
from sesame.api.v1 import evidence_service_pb2 as evidence_pb
from sesame.api.v1 import evidence_service_pb2_grpc as evidence_grpc
from sesame.server.domain.challenges import ChallengeFlows
from sesame.server.domain.enrollment import EnrollmentFlows
from sesame.server.domain.lifecycle import UnblockOutcome
from sesame.server.domain.ports import Clock
from sesame.server.domain.privacy import mask_phone
from sesame.server.domain.proofs import EvidencePage, ProofFlows
from sesame.server.grpc import evidence_translate, translate, translate_risk, user_evidence_translate
from sesame.server.grpc import translate_users as users
from sesame.server.grpc.callers import current_caller
from sesame.server.user_evidence import UserEvidence, UserQuery

Context = grpc.aio.ServicerContext[Any, Any]


# The seals covering a challenge's journal, as JSON (docs/decisions/0027): app wires it.
ChallengeSeals = Callable[[str, list[dict[str, Any]]], Awaitable[str]]
# A user's evidence: its challenges by period or transaction id, lifecycle, health notes (decision 0036).
UserEvidenceCall = Callable[[UserQuery], Awaitable[UserEvidence]]


class AuthenticationServicer(auth_grpc.AuthenticationServiceServicer):
    """sesame.api.v1.AuthenticationService."""

    def __init__(self, flows: ChallengeFlows, proofs: ProofFlows, clock: Clock) -> None:
        self._flows = flows
        self._proofs = proofs
        self._clock = clock

    async def StartChallenge(  # noqa: N802 (the generated base class names the method)
        self, request: auth_pb.StartChallengeRequest, context: Context
    ) -> auth_pb.StartChallengeResponse:
        challenge = await self._flows.start(translate.start_request(request))
        return auth_pb.StartChallengeResponse(
            challenge_id=challenge.challenge_id,
            expires_at=translate.timestamp(challenge.expires_at),
            masked_phone=mask_phone(challenge.phone),
            delivery_state=translate.delivery_state(challenge.delivery),
            risk=translate_risk.assessment(challenge.risk),
        )

    async def VerifyChallenge(  # noqa: N802
        self, request: auth_pb.VerifyChallengeRequest, context: Context
    ) -> auth_pb.VerifyChallengeResponse:
        outcome = await self._flows.verify(translate.verify_request(request))
        return auth_pb.VerifyChallengeResponse(
            result=translate.verify_result(outcome.result),
            attempts_left=outcome.attempts_left,
            proof=outcome.proof,
        )

    async def ResendChallenge(  # noqa: N802
        self, request: auth_pb.ResendChallengeRequest, context: Context
    ) -> auth_pb.ResendChallengeResponse:
        call = translate.targeted(request)
        challenge = await self._flows.resend(call.challenge_id, call.context, call.request_id)
        return auth_pb.ResendChallengeResponse(
            delivery_state=translate.delivery_state(challenge.delivery),
            expires_at=translate.timestamp(challenge.expires_at),
            resends_left=challenge.resends_left,
        )

    async def CancelChallenge(  # noqa: N802
        self, request: auth_pb.CancelChallengeRequest, context: Context
    ) -> auth_pb.CancelChallengeResponse:
        call = translate.targeted(request)
        challenge = await self._flows.cancel(call.challenge_id, call.context)
        return auth_pb.CancelChallengeResponse(challenge=translate.challenge(challenge, self._clock.now()))

    async def GetChallenge(  # noqa: N802
        self, request: auth_pb.GetChallengeRequest, context: Context
    ) -> auth_pb.GetChallengeResponse:
        challenge = await self._flows.get(translate.challenge_id(request.challenge_id))
        return auth_pb.GetChallengeResponse(challenge=translate.challenge(challenge, self._clock.now()))

    async def GetProof(  # noqa: N802
        self, request: auth_pb.GetProofRequest, context: Context
    ) -> auth_pb.GetProofResponse:
        return auth_pb.GetProofResponse(
            proof=await self._proofs.get(translate.challenge_id(request.challenge_id))
        )

    async def GetProofKeys(  # noqa: N802
        self, request: auth_pb.GetProofKeysRequest, context: Context
    ) -> auth_pb.GetProofKeysResponse:
        return auth_pb.GetProofKeysResponse(
            jwks_json=evidence_translate.jwks_json(await self._proofs.public_keys())
        )


class EvidenceServicer(evidence_grpc.EvidenceServiceServicer):
    """sesame.api.v1.EvidenceService."""

    def __init__(
        self,
        proofs: ProofFlows,
        clock: Clock,
        seals: ChallengeSeals | None = None,
        user_evidence: UserEvidenceCall | None = None,
    ) -> None:
        self._proofs = proofs
        self._clock = clock
        self._seals = seals
        self._user_evidence = user_evidence

    async def GetChallengeEvidence(  # noqa: N802
        self, request: evidence_pb.GetChallengeEvidenceRequest, context: Context
    ) -> evidence_pb.GetChallengeEvidenceResponse:
        page = EvidencePage(request.page_token, request.page_size)
        challenge_id = translate.challenge_id(request.challenge_id)
        evidence = await self._proofs.evidence(challenge_id, page)
        answer = evidence_translate.evidence(evidence, self._clock.now())
        if self._seals is not None and not request.page_token:
            # The refusal counts as answered, stated in the signed extent (decision 0102).
            refusals = evidence_translate.refusal_dicts(answer.refusals)
            answer.seals_json = await self._seals(challenge_id, refusals)
        return answer

    async def GetUserEvidence(  # noqa: N802
        self, request: evidence_pb.GetUserEvidenceRequest, context: Context
    ) -> evidence_pb.GetUserEvidenceResponse:
        query = user_evidence_translate.query(request)
        if self._user_evidence is None:
            return evidence_pb.GetUserEvidenceResponse()
        return user_evidence_translate.answer(await self._user_evidence(query))


class EnrollmentServicer(enrol_grpc.EnrollmentServiceServicer):
    """sesame.api.v1.EnrollmentService."""

    def __init__(self, flows: EnrollmentFlows, clock: Clock) -> None:
        self._flows = flows
        self._clock = clock

    async def EnrollUser(  # noqa: N802
        self, request: enrol_pb.EnrollUserRequest, context: Context
    ) -> enrol_pb.EnrollUserResponse:
        user = await self._flows.enroll(translate.enroll_request(request, current_caller()))
        return enrol_pb.EnrollUserResponse(user=translate.user(user, self._clock.now()))

    async def GetUser(  # noqa: N802
        self, request: enrol_pb.GetUserRequest, context: Context
    ) -> enrol_pb.GetUserResponse:
        user = await self._flows.get(translate.user_id(request.user_id))
        return enrol_pb.GetUserResponse(user=translate.user(user, self._clock.now()))

    async def SuspendUser(  # noqa: N802
        self, request: enrol_pb.SuspendUserRequest, context: Context
    ) -> enrol_pb.SuspendUserResponse:
        result = await self._flows.suspend(users.status_request(request, current_caller()))
        return enrol_pb.SuspendUserResponse(
            user=translate.user(result.user, self._clock.now()), voided_challenges=result.voided
        )

    async def ReinstateUser(  # noqa: N802
        self, request: enrol_pb.ReinstateUserRequest, context: Context
    ) -> enrol_pb.ReinstateUserResponse:
        result = await self._flows.reinstate(users.status_request(request, current_caller()))
        return enrol_pb.ReinstateUserResponse(user=translate.user(result.user, self._clock.now()))

    async def RevokeUser(  # noqa: N802
        self, request: enrol_pb.RevokeUserRequest, context: Context
    ) -> enrol_pb.RevokeUserResponse:
        result = await self._flows.revoke(users.status_request(request, current_caller()))
        return enrol_pb.RevokeUserResponse(
            user=translate.user(result.user, self._clock.now()), voided_challenges=result.voided
        )

    async def ChangeSecurePhone(  # noqa: N802
        self, request: enrol_pb.ChangeSecurePhoneRequest, context: Context
    ) -> enrol_pb.ChangeSecurePhoneResponse:
        result = await self._flows.change_phone(users.phone_request(request, current_caller()))
        return enrol_pb.ChangeSecurePhoneResponse(
            user=translate.user(result.user, self._clock.now()),
            old_phone_notified=result.old_phone_notified,
            voided_challenges=result.voided,
        )

    async def OverrideSecurePhone(  # noqa: N802
        self, request: enrol_pb.OverrideSecurePhoneRequest, context: Context
    ) -> enrol_pb.OverrideSecurePhoneResponse:
        result = await self._flows.change_phone(users.override_request(request, current_caller()))
        return enrol_pb.OverrideSecurePhoneResponse(
            user=translate.user(result.user, self._clock.now()),
            old_phone_notified=result.old_phone_notified,
            voided_challenges=result.voided,
        )

    async def UnblockUser(  # noqa: N802
        self, request: enrol_pb.UnblockUserRequest, context: Context
    ) -> enrol_pb.UnblockUserResponse:
        result = await self._flows.unblock(users.unblock_request(request, current_caller()))
        return enrol_pb.UnblockUserResponse(
            user=translate.user(result.user, self._clock.now()),
            unblocked=result.outcome is UnblockOutcome.UNBLOCKED,
        )

    async def TerminateClient(  # noqa: N802
        self, request: enrol_pb.TerminateClientRequest, context: Context
    ) -> enrol_pb.TerminateClientResponse:
        revoked = await self._flows.terminate_client(users.terminate_request(request, current_caller()))
        return enrol_pb.TerminateClientResponse(revoked_users=revoked)
