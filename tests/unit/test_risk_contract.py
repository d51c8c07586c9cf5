"""The risk contract at the gRPC edge: a DENY's status, the assessment's proto form, the forwarded signals."""

from __future__ import annotations

from datetime import UTC, datetime

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from google.rpc import error_details_pb2

from sesame.api.v1 import authentication_service_pb2 as auth_pb
from sesame.api.v1 import operation_pb2 as op_pb
from sesame.server.domain.errors import InvalidRequest, RiskDenied
from sesame.server.domain.operation import Money
from sesame.server.domain.risk import RiskAssessment, RiskDecision, RiskReason
from sesame.server.grpc import translate_risk
from sesame.server.grpc.fields import Fields
from sesame.server.grpc.status import to_status


class TestDenied:
    def test_a_deny_is_failed_precondition_with_its_reasons_in_error_info(self) -> None:
        """RISK_DENIED, the codes, each description and the rules' version in the metadata."""
        status = to_status(
            RiskDenied("u-1", ("SIM_SWAP", "NEW_PAYEE"), ("SIM changed", "new payee"), "v1+abc")
        )
        assert status.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
        (detail,) = status.details
        info = error_details_pb2.ErrorInfo()
        assert detail.Unpack(info)
        assert info.reason == "RISK_DENIED"
        assert dict(info.metadata) == {
            "reasons": "SIM_SWAP,NEW_PAYEE",
            "rules_version": "v1+abc",
            "reason.SIM_SWAP": "SIM changed",
            "reason.NEW_PAYEE": "new payee",
        }
        assert "u-1" not in status.message


class TestAssessment:
    def test_the_assessment_reads_as_the_contract_names_it(self) -> None:
        """Decision, reasons with descriptions, rules version."""
        value = RiskAssessment(RiskDecision.HOLD, (RiskReason("NEW_PAYEE", "new"),), "v1+abc")
        message = translate_risk.assessment(value)
        assert message == auth_pb.RiskAssessment(
            decision=auth_pb.RISK_DECISION_HOLD,
            reasons=[auth_pb.RiskReason(code="NEW_PAYEE", description="new")],
            rules_version="v1+abc",
        )

    def test_no_assessment_leaves_the_field_unset(self) -> None:
        """None stays None."""
        assert translate_risk.assessment(None) is None


class TestForwarded:
    def test_the_forwarded_signals_are_read(self) -> None:
        """When the payee was first used, the balance (an overdraft too) and the account's age."""
        first = Timestamp(seconds=1_700_000_000)
        opened = Timestamp(seconds=1_600_000_000)
        context = op_pb.RequestContext(
            payee_first_used=first,
            account=op_pb.AccountSummary(
                balance=op_pb.Money(currency="EUR", amount_minor=-5000), opened_at=opened
            ),
        )
        fields = Fields()
        forwarded = translate_risk.forwarded(fields, context)
        fields.raise_if_any()
        assert forwarded.payee_first_used == datetime.fromtimestamp(1_700_000_000, UTC)
        assert forwarded.account is not None
        assert forwarded.account.balance == Money("EUR", -5000)
        assert forwarded.account.opened_at == datetime.fromtimestamp(1_600_000_000, UTC)

    def test_nothing_forwarded_is_unknown(self) -> None:
        """An empty context forwards nothing."""
        forwarded = translate_risk.forwarded(Fields(), op_pb.RequestContext())
        assert (forwarded.payee_first_used, forwarded.account) == (None, None)

    def test_a_bad_balance_currency_is_a_field_violation(self) -> None:
        """The balance's currency is checked like any amount's."""
        fields = Fields()
        context = op_pb.RequestContext(
            account=op_pb.AccountSummary(balance=op_pb.Money(currency="XX", amount_minor=1))
        )
        translate_risk.forwarded(fields, context)
        with pytest.raises(InvalidRequest, match=r"context\.account\.balance\.currency"):
            fields.raise_if_any()
