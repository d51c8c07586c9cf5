"""Start's and Resend's second script: the number's, caller's and global send units, held in their own
slot concurrently with the step (decision 0046).

The step (open_challenge.lua, record_resend.lua) takes the user's unit in the user's slot; the other three
budgets live in one `{sb}` slot, which Redis Cluster cannot join to the user's in one script. So both
scripts are sent at once (one round trip on the critical path) and each outcome is squared with the other:
a refused step gives the held units back; a refused take voids what the step opened (its SMS is never
sent) and answers the refusal as the one step did. The units stay held, not spent, until a dispatcher hands
the SMS over (`Dispatcher` spends them then), and a hold nobody spends stops counting after a grace: a crash
between the two scripts leaks no unit past it, and the dispatcher sends no SMS whose units are not held.

A number's, caller's or the global budget whose take was refused is remembered until a unit of it frees:
the next Starts take their units first, and run the step only once held. Sent at once, each refused Start
opened a challenge, journaled it and voided it: 1.7 KB kept in Redis a day and 2.7 KB in the archive for
each call a pumping caller repeated past its ceiling (outside audits, AQ1 and its remainder). Refused again,
the Start asks what the step would know that the refusal does not (`_taken_first`): a request id already
claimed is a retry the step answers with its challenge (AT2), and the number recalled is only the one this
worker last saw, which the user may have left (AT1); either way the step and the take go as for any Start.
A Resend without a request id takes its challenge's number's budget first too, when refused lately (AT3).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections import OrderedDict
from typing import TYPE_CHECKING

from sesame.server.domain import budgets
from sesame.server.domain.budgets import BudgetKind, BudgetSubject, Charge, Hold, SendBudget
from sesame.server.domain.errors import SendBudgetExhausted, StoreUnavailable, UserNotFound
from sesame.server.domain.lifecycle import Provenance, Voiding, VoidOutcome, VoidReason
from sesame.server.domain.model import ChallengeStatus, DeliveryState
from sesame.server.domain.risk_recall import RiskRecall
from sesame.server.domain.tally import UNTALLIED, Tally

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from datetime import datetime

    from sesame.server.domain.challenges import StartRequest
    from sesame.server.domain.model import Challenge, RequestContext
    from sesame.server.domain.opening import Opened
    from sesame.server.domain.ports import State
    from sesame.server.domain.resending import Resent


class SendHolds:
    """The second script of Start and Resend, and what each answer makes of the other's."""

    def __init__(self, store: State, budget: SendBudget, tally: Tally = UNTALLIED) -> None:
        self._store = store
        self._budget = budget
        self._tally = tally
        self._refused = RefusedSubjects()
        # The secure number this worker last saw for each user: Start's step reads the number itself, so
        # the number's unit is held for the one recalled; a first Start (or one after a change of number)
        # holds it once the step answered (one round trip more, decision 0046).
        self._numbers = RiskRecall()

    async def opened(
        self,
        step: Callable[[], Awaitable[Opened]],
        request: StartRequest,
        challenge_id: str,
        now: datetime,
        expires_at: datetime,
    ) -> Opened:
        """The step's answer, with the challenge's units held; the step's refusal, or the take's (the
        challenge the step opened is then voided and its SMS never sent; or, for a subject refused lately,
        nothing opened: the take goes first). Its caller runs it to its end (`to_the_end`): cut between the
        step and the take, a challenge would be left without its units."""
        user_id, context = request.user_id, request.context
        number = self._numbers.recalled(user_id)
        hold = Hold(challenge_id, now, expires_at, self._budget.hold_grace)
        if number is None:
            return await self._opened_first(step, request, hold)
        charges = self._charges(user_id, number, context)
        opened, taken = await self._outcomes(step, hold, charges, request, number)
        if isinstance(opened, BaseException):
            if not isinstance(taken, BaseException):
                await self._store.send_units.release(hold.name)  # nothing queued: units back, nothing left
            raise opened
        if not opened.queued:  # a retried request id's first challenge: nothing queued under this hold
            if not isinstance(taken, BaseException):
                await self._store.send_units.release(hold.name)
            return await self._earlier(opened, request, hold)
        actual = opened.challenge.phone
        self._numbers.keep(user_id, actual)
        if number != actual:
            # The step sent the code to another number than the one recalled (it changed): its unit now,
            # the other's back; or, the take refused (the old number's budget spent: the first Start after
            # a change of number was refused on it, an outside audit, AT1), the units taken again with it.
            try:
                if isinstance(taken, BaseException):
                    await self._take(hold, self._charges(user_id, actual, context))
                else:
                    await self._store.send_units.take(hold, (self._phone(actual),), (self._phone(number),))
                taken = None
            except Exception as refused:  # noqa: BLE001 (re-raised below, once the challenge is voided)
                taken = refused
        if isinstance(taken, BaseException):
            await self._withdraw(opened.challenge, hold, request)
            raise taken
        return opened

    async def _outcomes(
        self,
        step: Callable[[], Awaitable[Opened]],
        hold: Hold,
        charges: Sequence[Charge],
        request: StartRequest,
        number: str,
    ) -> tuple[Opened | BaseException, BaseException | None]:
        """The step's and the take's outcomes, sent at once; but for a subject refused lately, the take
        first, and the step only once it held (`_taken_first`)."""
        if self._refused.any(charges, hold.at) and await self._taken_first(hold, charges, request, number):
            try:
                return await step(), None
            except Exception as refused:  # noqa: BLE001 (an outcome, as gathered)
                return refused, None
        return await asyncio.gather(step(), self._take(hold, charges), return_exceptions=True)

    async def _taken_first(
        self, hold: Hold, charges: Sequence[Charge], request: StartRequest, number: str | None
    ) -> bool:
        """The take ahead of the step, for a Start one of whose subjects was refused lately: True once held;
        refused again, raised with nothing opened, unless the step may answer otherwise (False: the step and
        the take then go as for any Start): a request id already claimed is a retry the step answers with its
        challenge (AT2), and a number's refusal is for the number this worker last saw, which the user may
        have left (AT1). Before, each such Start opened a challenge, journaled it and voided it (AQ1)."""
        try:
            await self._take(hold, charges)
        except SendBudgetExhausted as refused:
            claimed, moved = await asyncio.gather(
                self._claimed(request), self._moved(request.user_id, number, refused)
            )
            if claimed or moved:
                return False
            raise
        return True

    async def _claimed(self, request: StartRequest) -> bool:
        return bool(request.request_id) and await self._store.challenges.start_claimed(
            request.user_id, request.request_id
        )

    async def _moved(self, user_id: str, number: str | None, refused: SendBudgetExhausted) -> bool:
        """Whether the user's number is no longer the refused one's (a user deleted meanwhile: no)."""
        if number is None or refused.subject != BudgetKind.PHONE.value:
            return False
        try:
            return (await self._store.users.get_user(user_id)).secure_phone != number
        except UserNotFound:
            return False

    async def _opened_first(
        self, step: Callable[[], Awaitable[Opened]], request: StartRequest, hold: Hold
    ) -> Opened:
        """A worker's first Start of a user (no number recalled): the step first, which answers the number,
        then the number's, caller's and global units in one take: two scripts in sequence (decision 0054),
        where holding the caller's and global units with the step and the number's after it took three. A
        refused take voids the opened challenge and withdraws the hold, as a refused take always does; but
        a caller's or global ceiling refused lately is taken before the step (`_taken_first`)."""
        ahead = self._charges(request.user_id, None, request.context)
        held = self._refused.any(ahead, hold.at) and await self._taken_first(hold, ahead, request, None)
        try:
            opened = await step()
        except BaseException:
            if held:
                await self._store.send_units.release(hold.name)
            raise
        if not opened.queued:  # a retried request id's first challenge: nothing was held for it here
            if held:
                await self._store.send_units.release(hold.name)
            return await self._earlier(opened, request, hold)
        actual = opened.challenge.phone
        self._numbers.keep(request.user_id, actual)
        try:
            # What was taken ahead is not counted again under the same hold (decision 0062).
            await self._take(hold, self._charges(request.user_id, actual, request.context))
        except Exception:
            await self._withdraw(opened.challenge, hold, request)
            raise
        return opened

    async def _take(self, hold: Hold, charges: Sequence[Charge]) -> None:
        """The take, its refusal remembered for the subject it names, until a unit of it frees."""
        try:
            await self._store.send_units.take(hold, charges)
        except SendBudgetExhausted as refused:
            self._refused.keep(charges, refused, hold.at)
            raise
        self._refused.forget(charges)

    async def _earlier(self, opened: Opened, request: StartRequest, hold: Hold) -> Opened:
        """A retried request id's first challenge, its SMS still queued: its units held under its own name.

        Its first call's answer may have been lost after the step ran (Redis restarted, the connection cut):
        that call answered UNAVAILABLE and gave back the units it held, and the dispatcher sends no SMS
        without them, so the retry that answers the challenge would have promised a code that never came
        (decision 0062). Held once whatever the first call did (a budget already held or spent under that name
        is not counted again); refused (a budget spent meanwhile, Redis away), the SMS stays unsent as before,
        its challenge answered all the same (GetChallenge tells its delivery, a Resend sends it)."""
        challenge = opened.challenge
        if challenge.status is not ChallengeStatus.OPEN or challenge.delivery is not DeliveryState.QUEUED:
            return opened
        charges = self._charges(request.user_id, challenge.phone, request.context)
        own = Hold(challenge.challenge_id, hold.at, challenge.expires_at, hold.grace)
        await self._hold_again(own, charges)
        return opened

    async def _hold_again(self, earlier: Hold, charges: Sequence[Charge]) -> None:
        """An earlier call's SMS, still queued, its units held under its own name (`earlier`) again: a Start's
        (decision 0062) or a Resend's (0065) retried by its request id. Held once whatever the first call did
        (a budget already held under that name is not counted again; a hold already spent holds nothing);
        refused (a budget spent meanwhile, Redis away), that SMS stays unsent, the retry answered all the same
        (GetChallenge tells its delivery, a Resend sends it)."""
        with contextlib.suppress(SendBudgetExhausted, StoreUnavailable):
            await self._store.send_units.take(earlier, charges)

    async def resent(
        self,
        taking: Callable[[Sequence[Charge], str], Awaitable[Resent]],
        known: Challenge,
        context: RequestContext,
        now: datetime,
        request_id: str = "",
    ) -> Resent:
        """The resend's step (`taking`, given the user's charge and the hold's name) sent with the take of
        its other units; a refused step gives them back; a refused take withdraws the hold, so that the
        SMS the step queued is dropped by the dispatcher (the resend itself given back, and its
        `request_id`). A step that answers an earlier call's resend (its request id retried) gives this
        call's units back and holds that resend's again while its SMS is queued (decision 0065). Its
        caller runs it to its end (`to_the_end`)."""
        hold = Hold(
            f"{known.challenge_id}:r{secrets.token_hex(6)}", now, known.expires_at, self._budget.hold_grace
        )
        own, others = budgets.held_charges(
            budgets.charges(self._budget, known.user_id, known.phone, context.caller)
        )
        # A subject refused lately is taken first, for a resend without a request id (one with may be a retry
        # the step answers): refused again, nothing is written. Sent at once, each resend refused on a spent
        # number or ceiling took the resend, journaled it and its withdrawal and left a dead letter, 2.1 KB
        # a call, while neither the resends' limit nor their spacing stopped the next (an outside audit,
        # AT3). The number is the challenge's own here, not a guess.
        if not request_id and self._refused.any(others, now):
            await self._take(hold, others)
            taken: BaseException | None = None
            try:
                resent: Resent | BaseException = await taking(own, hold.name)
            except Exception as refused:  # noqa: BLE001 (an outcome, as gathered)
                resent = refused
        else:
            resent, taken = await asyncio.gather(
                taking(own, hold.name), self._take(hold, others), return_exceptions=True
            )
        if isinstance(resent, BaseException):
            if not isinstance(taken, BaseException):
                await self._store.send_units.release(hold.name)
            raise resent
        if resent.earlier:  # nothing queued under this call's hold
            if not isinstance(taken, BaseException):
                await self._store.send_units.release(hold.name)
            if resent.queued:
                await self._hold_again(Hold(resent.earlier_hold, now, known.expires_at, hold.grace), others)
            return resent
        if isinstance(taken, BaseException):
            # The resend, its user's unit and its SMS were taken: given back, the SMS dropped by the
            # dispatcher (its hold withdrawn). Best effort, as for Start: no hold, no SMS, whatever fails.
            await asyncio.gather(
                self._store.challenges.withdraw_resend(known, now, context, request_id, hold.name),
                self._store.send_units.release(hold.name, hold.grace),
                return_exceptions=True,
            )
            raise taken
        return resent

    async def _withdraw(self, challenge: Challenge, hold: Hold, request: StartRequest) -> None:
        """Void the challenge whose units were refused and withdraw its hold: its SMS is never sent (the
        dispatcher drops an SMS whose challenge is closed or whose hold is withdrawn). Best effort: when
        either fails, the dispatcher still finds no hold and sends nothing."""
        caller = request.context.caller
        provenance = Provenance(caller or "sesame", "send budget", request.request_id, caller)
        voiding = Voiding(challenge.user_id, VoidReason.SEND_BUDGET, hold.at, provenance)
        voided, _ = await asyncio.gather(
            self._store.challenges.void_challenge(challenge.challenge_id, voiding),
            self._store.send_units.release(hold.name, hold.grace),
            return_exceptions=True,
        )
        # Counted as operations.md says (an outside audit, AQ2: `send_budget` voids were never counted).
        if voided is VoidOutcome.VOIDED:
            self._tally.voided(VoidReason.SEND_BUDGET)

    def _charges(self, user_id: str, number: str | None, context: RequestContext) -> tuple[Charge, ...]:
        """The number's (when recalled), the caller's and the global charges of one SMS."""
        _, others = budgets.held_charges(budgets.charges(self._budget, user_id, number or "", context.caller))
        return tuple(c for c in others if number is not None or c.subject.kind is not BudgetKind.PHONE)

    def _phone(self, number: str) -> Charge:
        return Charge(BudgetSubject.phone(number), self._budget.per_phone, self._budget.window)


class RefusedSubjects:
    """The number's, caller's and global budgets a take refused lately, each until a unit of it frees, in
    this process: bounded, the oldest forgotten first (forgotten, a subject's next Start or Resend only costs
    what it cost before: one challenge opened and voided, one resend taken and given back)."""

    def __init__(self, bound: int = 4096) -> None:
        self._bound = bound
        self._until: OrderedDict[BudgetSubject, datetime] = OrderedDict()

    def any(self, charges: Sequence[Charge], now: datetime) -> bool:
        """Whether one of the charges' subjects was refused and no unit of it has freed since."""
        return any(now < self._until.get(charge.subject, now) for charge in charges)

    def keep(self, charges: Sequence[Charge], refused: SendBudgetExhausted, now: datetime) -> None:
        """Remember the refused subject (the charge of the kind the refusal names) until a unit frees."""
        for charge in charges:
            if charge.subject.kind.value == refused.subject:
                self._until[charge.subject] = now + refused.retry_after
                self._until.move_to_end(charge.subject)
        while len(self._until) > self._bound:
            self._until.popitem(last=False)

    def forget(self, charges: Sequence[Charge]) -> None:
        """The charges were held: their subjects have room again."""
        for charge in charges:
            self._until.pop(charge.subject, None)
