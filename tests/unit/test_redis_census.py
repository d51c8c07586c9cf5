"""bench.redis_census's pure parts: how keys are grouped into kinds, and how two censuses compare."""

from __future__ import annotations

from bench.redis_census import Kind, grown, kind_of

CHALLENGE = b"sesame:{s:15}:ch:92db1b5e2cbfcbea79dd9cbd35982c81.k1.d6.u2bd806c97f0e00af"


def test_a_kind_leaves_out_tags_ids_digests_and_bench_users() -> None:
    assert kind_of(CHALLENGE) == "sesame:{}:ch:<id>"
    assert kind_of(CHALLENGE + b":journal:tail") == "sesame:{}:ch:<id>:journal:tail"
    assert kind_of(b"sesame:{sb}:phone:7abc358553f3560459b1cbade8849af4") == "sesame:{}:phone:<digest>"
    assert kind_of(b"sesame:{sb}:hold:afca988c2bde5d23b453") == "sesame:{}:hold:<digest>"
    assert kind_of(b"sesame:{s:3}:risk:bench-24818-37:ops") == "sesame:{}:risk:<user>:ops"
    assert kind_of(b"sesame:{s:3}:openings:bench-1-2") == "sesame:{}:openings:<user>"
    # Anything else is kept as it is: a user named otherwise, a short hex segment.
    assert kind_of(b"sesame:{s:3}:user:alice") == "sesame:{}:user:alice"
    assert kind_of(b"sesame:{s:0}:feed:abc") == "sesame:{}:feed:abc"


def test_the_growth_is_per_kind_biggest_first_and_kept_if_either_side_was() -> None:
    before = {"a": Kind(100, kept=True), "b": Kind(50, kept=False), "gone": Kind(30, kept=False)}
    after = {"a": Kind(400, kept=True), "b": Kind(50, kept=False), "new": Kind(1000, kept=False)}
    assert grown(before, after) == {
        "new": Kind(1000, kept=False),
        "a": Kind(300, kept=True),
        "gone": Kind(-30, kept=False),
    }
    assert list(grown(before, after)) == ["new", "a", "gone"]
