"""The caller policy file: parsed and checked against the RPCs this server answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from sesame.server.grpc.catalogue import GOVERNED
from sesame.server.grpc.policy import CallerPolicy, InvalidPolicy, parse_policy
from tests.support.pki import BACKOFFICE, PAYMENTS, POLICY, STRANGER

ENROL = "sesame.api.v1.EnrollmentService/EnrollUser"
START = "sesame.api.v1.AuthenticationService/StartChallenge"
GET_CHALLENGE = "sesame.api.v1.AuthenticationService/GetChallenge"


def problems_of(text: str) -> tuple[str, ...]:
    """The problems InvalidPolicy lists for `text`."""
    with pytest.raises(InvalidPolicy) as caught:
        parse_policy(text)
    return caught.value.problems


def test_a_good_file_grants_each_caller_its_methods() -> None:
    """The test policy lets the backoffice enrol and payments start challenges, and nothing more."""
    policy = parse_policy(POLICY)
    assert policy.allows(BACKOFFICE, ENROL)
    assert policy.allows(BACKOFFICE, GET_CHALLENGE)
    assert not policy.allows(BACKOFFICE, START)
    assert policy.allows(PAYMENTS, START)
    assert not policy.allows(PAYMENTS, ENROL)


def test_a_wildcard_grants_every_method_of_its_service_only() -> None:
    """`Service/*` expands to each method the service has, and to no method of another service."""
    policy = parse_policy('[callers."a"]\nallow = ["sesame.api.v1.AuthenticationService/*"]\n')
    methods = GOVERNED["sesame.api.v1.AuthenticationService"]
    assert policy.grants["a"] == {f"sesame.api.v1.AuthenticationService/{m}" for m in methods}
    assert len(methods) == 7
    assert not policy.allows("a", ENROL)


def test_an_unknown_caller_or_no_identity_is_allowed_nothing() -> None:
    """A caller the policy does not name, or a call with no verified identity, is refused."""
    policy = parse_policy(POLICY)
    assert not policy.allows(STRANGER, START)
    assert not policy.allows(None, START)


def test_an_unknown_method_is_refused() -> None:
    """A method the service does not have is a boot problem, not a rule that never matches."""
    (problem,) = problems_of('[callers."a"]\nallow = ["sesame.api.v1.EnrollmentService/EnrolUser"]\n')
    assert "'EnrolUser'" in problem
    assert 'callers."a".allow[0]' in problem


def test_an_unknown_service_is_refused() -> None:
    """A service this server does not answer is a boot problem."""
    (problem,) = problems_of('[callers."a"]\nallow = ["sesame.api.v2.EnrollmentService/*"]\n')
    assert "'sesame.api.v2.EnrollmentService'" in problem


def test_bad_toml_is_refused() -> None:
    """A file that is not TOML is one problem saying so."""
    (problem,) = problems_of('[callers."a"\nallow = [\n')
    assert problem.startswith("not valid TOML")


def test_every_problem_is_listed_at_once() -> None:
    """An unknown key, a bad rule shape, health named and an empty list are four problems in one error."""
    text = """
    version = 2
    [callers."a"]
    allow = ["sesame.api.v1.EnrollmentService", "grpc.health.v1.Health/Check"]
    [callers."b"]
    allow = []
    """
    problems = problems_of(text)
    assert len(problems) == 4
    assert any("'version'" in p for p in problems)
    assert any('callers."a".allow[0]' in p for p in problems)
    assert any("grpc.health.v1.Health" in p for p in problems)
    assert any('callers."b".allow' in p for p in problems)


def test_an_unquoted_dotted_identity_is_explained() -> None:
    """[callers.a.b] makes nested tables in TOML: the problem says to quote the identity."""
    problems = problems_of('[callers.payments.mabanque]\nallow = ["sesame.api.v1.EnrollmentService/*"]\n')
    assert any("'mabanque'" in p and 'quote a dotted identity: [callers."a.b"]' in p for p in problems)


def test_a_file_without_callers_is_refused() -> None:
    """An empty policy would refuse every call: it is a boot problem rather than an outage."""
    (problem,) = problems_of("")
    assert "no caller" in problem


def test_reflection_is_granted_like_any_rpc() -> None:
    """Reflection is named in a policy like our own services; health is never checked by it."""
    policy = parse_policy(POLICY)
    reflection = "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
    assert policy.allows(BACKOFFICE, reflection)
    assert not policy.allows(PAYMENTS, reflection)
    assert isinstance(policy, CallerPolicy)


def test_the_policy_docs_show_is_the_example_file_and_it_boots() -> None:
    """docs/operations.md shows docs/examples/caller-policy.toml verbatim, and the server accepts it."""
    docs = Path(__file__).parents[2] / "docs"
    example = (docs / "examples" / "caller-policy.toml").read_text(encoding="utf-8")
    operations = (docs / "operations.md").read_text(encoding="utf-8")
    section = operations[operations.index("### The caller policy") :]
    block = section[section.index("```toml\n") + len("```toml\n") :]
    assert block[: block.index("```\n")] == example
    assert parse_policy(example).allows(
        "online.mabanque.internal", "sesame.api.v1.EnrollmentService/ChangeSecurePhone"
    )
