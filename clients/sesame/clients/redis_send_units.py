"""`RedisSendUnits`: the number's, caller's and global send budgets on Redis, in their one `{sb}` slot
(decision 0046).

Start and Resend take the user's unit in their own step (the user's slot) and send `take_send_units.lua`
concurrently with it: one script, one slot, for the three other budgets. The units are held under the SMS's
name until the dispatcher spends them (`spend_send_units.lua`) just before it hands the SMS over; a refused
step gives them back (`release_send_units.lua`); a hold never spent stops counting after its grace.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime, timedelta

from sesame.clients import redis_records as rec
from sesame.clients.redis_place import RedisPlace
from sesame.server.domain.budgets import BudgetSubject, Charge, Hold, Spending
from sesame.server.domain.errors import SendBudgetExhausted
from sesame.server.domain.ports import SendUnits


class RedisSendUnits(RedisPlace):
    """Holds and spent units of the `{sb}` budgets; each method is one script on that one slot."""

    async def take(self, hold: Hold, charges: Sequence[Charge], dropping: Sequence[Charge] = ()) -> None:
        """Hold one unit of each charge (see the port). SendBudgetExhausted."""
        name = _short(hold.name)
        keys = [self.keys.send_hold(name)]
        args: list[rec.Field] = [
            name,
            rec.to_ms(hold.at),
            hold.grace // rec.MS,
            rec.to_ms(hold.until),
            len(charges),
        ]
        for charge in (*charges, *dropping):
            keys += self._budget(charge.subject)
        for charge in charges:
            args += [charge.limit, charge.window // rec.MS]
        reply = await self._run("take_send_units", keys, args)
        if reply[0] == b"exhausted":
            subject = charges[int(reply[1])].subject
            raise SendBudgetExhausted(subject.kind.value, timedelta(milliseconds=int(reply[2])))

    async def release(self, name: str, withdrawn_for: timedelta | None = None) -> None:
        """Give the hold's units back (see the port)."""
        short = _short(name)
        marked = 0 if withdrawn_for is None else withdrawn_for // rec.MS
        await self._run("release_send_units", [self.keys.send_hold(short)], [short, marked])

    async def spend(
        self, name: str, number: BudgetSubject | None, at: datetime, grace: timedelta
    ) -> Spending:
        """Spend the hold's units once (see the port)."""
        checked = "" if number is None else self.keys.send_budget(number.kind.value, number.key)
        short = _short(name)
        args: list[rec.Field] = [short, rec.to_ms(at), grace // rec.MS, checked]
        reply = await self._run("spend_send_units", [self.keys.send_hold(short)], args)
        return Spending(reply.decode())

    def _budget(self, subject: BudgetSubject) -> list[str]:
        """A budget's spent set and held set."""
        kind, key = subject.kind.value, subject.key
        return [self.keys.send_budget(kind, key), self.keys.send_units_held(kind, key)]


def _short(name: str) -> str:
    """A hold's name as Redis keeps it: 80 bits of its SHA-256, the member of every budget's sorted sets and
    its record's name (a challenge id is 61 characters; three budgets keep it for their window)."""
    return hashlib.sha256(name.encode()).hexdigest()[:20]


_: type[SendUnits] = RedisSendUnits
