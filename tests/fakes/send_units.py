"""An in-memory SendUnits with the semantics of `RedisSendUnits` (tests/contracts/test_send_units_contract.py
holds them together): each budget's spent units and held units, each hold's record (decision 0046)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sesame.server.domain.budgets import BudgetSubject, Charge, Hold, Spending
from sesame.server.domain.errors import SendBudgetExhausted
from sesame.server.domain.ports import SendUnits
from tests.fakes.journal_fields import ms

_MS = timedelta(milliseconds=1)


@dataclass(slots=True)
class _Record:
    budgets: dict[BudgetSubject, tuple[int, timedelta]] = field(default_factory=dict)  # limit, window
    until: datetime | None = None
    spent: bool = False
    withdrawn: bool = False  # released: a late take holds nothing, a spend answers WITHDRAWN


class MemorySendUnits:
    """Spent units (subject -> name -> taken at) and held ones, as the two sorted sets of each budget."""

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self.spent: dict[BudgetSubject, dict[str, datetime]] = {}
        self.held: dict[BudgetSubject, dict[str, datetime]] = {}
        self._records: dict[str, _Record] = {}

    async def take(self, hold: Hold, charges: Sequence[Charge], dropping: Sequence[Charge] = ()) -> None:
        async with self._lock:
            now, grace = ms(hold.at), _ms(hold.grace)
            record = self._record(hold.name, now)
            if record is not None and (record.withdrawn or record.spent):
                return
            for charge in charges:
                if record is not None and charge.subject in record.budgets:
                    continue
                window = _ms(charge.window)
                times = self._counting(charge.subject, now, window, grace)
                if len(times) >= charge.limit:
                    wait = times[len(times) - charge.limit] + window - now
                    raise SendBudgetExhausted(charge.subject.kind.value, wait)
            record = record or _Record()
            for charge in dropping:
                self.held.get(charge.subject, {}).pop(hold.name, None)
                record.budgets.pop(charge.subject, None)
            for charge in charges:
                if charge.subject in record.budgets:
                    continue
                held = self.held.setdefault(charge.subject, {})
                for name in [n for n, t in held.items() if t <= now - grace]:
                    del held[name]
                held[hold.name] = now
                record.budgets[charge.subject] = (charge.limit, _ms(charge.window))
            until = max(ms(hold.until), now + grace)
            record.until = until if record.until is None else max(record.until, until)
            self._records[hold.name] = record

    async def release(self, name: str, withdrawn_for: timedelta | None = None) -> None:
        async with self._lock:
            record = self._records.get(name)
            if record is not None and record.spent:
                return
            for subject in record.budgets if record is not None else ():
                self.held.get(subject, {}).pop(name, None)
            self._records.pop(name, None)
            if withdrawn_for is not None:
                # Kept as withdrawn (for `withdrawn_for` in Redis; the fake has no clock of its own).
                self._records[name] = _Record(withdrawn=True)

    async def spend(
        self, name: str, number: BudgetSubject | None, at: datetime, grace: timedelta
    ) -> Spending:
        async with self._lock:
            now, grace = ms(at), _ms(grace)
            record = self._record(name, now)
            if record is None:
                return Spending.UNHELD
            if record.withdrawn:
                return Spending.WITHDRAWN
            if record.spent:
                return Spending.SPENT
            if number is not None and number not in record.budgets:
                return Spending.UNHELD
            taken = self._taken(name, record, now, grace)
            if taken is None:
                return Spending.EXHAUSTED
            for subject, (_, window) in record.budgets.items():
                self.held.get(subject, {}).pop(name, None)
                spent = self.spent.setdefault(subject, {})
                for old in [n for n, t in spent.items() if t <= now - window]:
                    del spent[old]
                spent[name] = taken[subject]
            record.spent = True
            return Spending.SPENT

    def _taken(
        self, name: str, record: _Record, now: datetime, grace: timedelta
    ) -> dict[BudgetSubject, datetime] | None:
        """When each held unit was taken; a lapsed hold taken again at `now` (None: a budget is full)."""
        taken = {s: self.held.get(s, {}).get(name) for s in record.budgets}
        if all(t is not None and t > now - grace for t in taken.values()):
            return {s: t for s, t in taken.items() if t is not None}
        for subject in record.budgets:
            self.held.get(subject, {}).pop(name, None)
        for subject, (limit, window) in record.budgets.items():
            if len(self._counting(subject, now, window, grace)) >= limit:
                return None
        return dict.fromkeys(record.budgets, now)

    def units(self, subject: BudgetSubject) -> int:
        """Units spent in the subject's budget (as ZCARD of its spent set)."""
        return len(self.spent.get(subject, {}))

    def _record(self, name: str, now: datetime) -> _Record | None:
        record = self._records.get(name)
        if record is not None and record.until is not None and now >= record.until:
            del self._records[name]
            return None
        return record

    def _counting(
        self, subject: BudgetSubject, now: datetime, window: timedelta, grace: timedelta
    ) -> list[datetime]:
        """The times of the units that count at `now`, oldest first (a held one as if it were spent)."""
        spent = [t for t in self.spent.get(subject, {}).values() if t > now - window]
        held = [t for t in self.held.get(subject, {}).values() if t > now - grace]
        return sorted(spent + held)


def _ms(span: timedelta) -> timedelta:
    return timedelta(milliseconds=span // _MS)


_: type[SendUnits] = MemorySendUnits
