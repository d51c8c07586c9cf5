"""Every Redis key Sésame writes, under the hash tag of its aggregate (docs/decisions/0002, 0010).

A user's keys share `{u:<id>}`, a challenge's `{ch:<id>}`, a client company's `{c:<id>}`, a send budget has
its own `{sb:user:<id>}`, `{sb:phone:<hash>}`, `{sb:caller:<hash>}` or `{sb:global:all}` (docs/decisions/0011,
0014). Each aggregate's journal stream sits next to what it records. Each Lua script touches the keys of
one tag only, except `open_challenge` and `record_resend`, which take their send units in the same step
and so span the challenge's slot and the budgets' on purpose (Redis Cluster is not supported yet).
"""

from __future__ import annotations


class Keyspace:
    """Key names under one prefix (`sesame` unless a deployment shares its Redis)."""

    def __init__(self, prefix: str = "sesame") -> None:
        self._prefix = prefix

    def user(self, user_id: str) -> str:
        """The user hash."""
        return f"{self._prefix}:{{u:{user_id}}}:user"

    def user_journal(self, user_id: str) -> str:
        """The user's journal stream."""
        return f"{self._prefix}:{{u:{user_id}}}:journal"

    def user_changes(self, user_id: str) -> str:
        """The request ids of the lifecycle changes applied to the user, with their fingerprints."""
        return f"{self._prefix}:{{u:{user_id}}}:changes"

    def user_pending(self, user_id: str) -> str:
        """The user's challenges that may still be open, scored by their expiry (unix ms)."""
        return f"{self._prefix}:{{u:{user_id}}}:pending"

    def start_request(self, user_id: str, request_id: str) -> str:
        """The idempotency key of one StartChallenge request."""
        return f"{self._prefix}:{{u:{user_id}}}:request:{request_id}"

    def challenge(self, challenge_id: str) -> str:
        """The challenge hash."""
        return f"{self._prefix}:{{ch:{challenge_id}}}:challenge"

    def challenge_journal(self, challenge_id: str) -> str:
        """The challenge's journal stream (it outlives the challenge)."""
        return f"{self._prefix}:{{ch:{challenge_id}}}:journal"

    def challenge_refusals(self, challenge_id: str) -> str:
        """How many times each kind of refusal was answered for the challenge, and when last (a hash).

        Only the first refusal of a kind is journaled: this keeps the journal bounded (it outlives the
        challenge, and so does this hash).
        """
        return f"{self._prefix}:{{ch:{challenge_id}}}:refusals"

    def client(self, client_id: str) -> str:
        """The client company's hash (status)."""
        return f"{self._prefix}:{{c:{client_id}}}:client"

    def client_users(self, client_id: str) -> str:
        """The ids of the users the client designated (a set)."""
        return f"{self._prefix}:{{c:{client_id}}}:users"

    def client_journal(self, client_id: str) -> str:
        """The client company's journal stream."""
        return f"{self._prefix}:{{c:{client_id}}}:journal"

    def send_budget(self, kind: str, key: str) -> str:
        """The SMS sent to one subject in the rolling window (a sorted set scored by unix ms).

        `key` is a user id, or the hash of a number or caller (`BudgetSubject`): never the number itself.
        """
        return f"{self._prefix}:{{sb:{kind}:{key}}}:sends"

    def key_ledger(self) -> str:
        """The highest key version seen per kind and each label's fingerprint (docs/decisions/0015)."""
        return f"{self._prefix}:{{keys}}:ledger"

    def key_ledger_journal(self) -> str:
        """The key ledger's journal stream: which labels were first seen, and when."""
        return f"{self._prefix}:{{keys}}:journal"
