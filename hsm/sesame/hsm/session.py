"""One logged-in session per token, and the one place where the reconnect policy lives (`TokenSession.call`).

Every call holds the module's lock (`sesame.hsm.worker`), so one session per token is enough: calls are
serialised anyway, and a single session means a single login, which a `close` (that logs out every session of
the token in this process) cannot pull from under another user. `TokenSession.call` runs on the HSM thread;
`TokenSession.try_now` runs a hot call on the caller's thread when that costs no wait, and leaves everything
else (opening, searching, reconnecting, translating errors) to `call`.
"""

from __future__ import annotations

import gc
import hmac
import logging
import math
import secrets
import sys
import time
from collections.abc import Callable
from enum import Enum
from typing import Any, Final, Literal, TypeVar

from pkcs11 import Attribute, Mechanism, ObjectClass
from pkcs11.exceptions import (
    DeviceError,
    DeviceRemoved,
    GeneralError,
    KeyHandleInvalid,
    MultipleObjectsReturned,
    NoSuchKey,
    NoSuchToken,
    ObjectHandleInvalid,
    PinExpired,
    PinIncorrect,
    PinInvalid,
    PinLenRange,
    PinLocked,
    PKCS11Error,
    SessionClosed,
    SessionHandleInvalid,
    TokenNotPresent,
    UserAlreadyLoggedIn,
    UserNotLoggedIn,
)

from sesame.hsm.worker import HsmWorker
from sesame.server.domain.errors import HsmUnavailable, KeyNotFound
from sesame.server.domain.model import KeyKind, key_versions

T = TypeVar("T")

_log = logging.getLogger("sesame.hsm")
# How often a session is tried before the token is called unavailable, and the pause that grows between two
# tries (jittered): about 1.5 s in all at most (decision 0064).
OPEN_ATTEMPTS: Final = 8
OPEN_PAUSE: Final = 0.07
# After a reconnect that failed, calls are refused at once for this long, without calling the module: the
# HSM is tried again by the first call after it (the health round's, once a second), not by every call
# (a login and two log lines each, hundreds a second under load: decision 0110).
RECONNECT_HOLD: Final = 1.0
# A fixed input no code is ever computed over (OCRA questions start with the suite name): the MAC of it by an
# OTP key, taken when this process first finds the key, tells that key from another under its label.
_IDENTITY_INPUT: Final = b"sesame key identity"
# A PIN refused is never tried again (an HSM may lock the token after a few).
_PIN_REFUSED: Final = (PinExpired, PinIncorrect, PinInvalid, PinLenRange, PinLocked)
PIN_REFUSED_HINT: Final = "the token refused the user PIN given (SESAME_HSM_PIN or SESAME_HSM_PIN_FILE)"
NO_LABEL_HINT: Final = (
    "the PKCS#11 module (SESAME_PKCS11_MODULE) has no token labelled as SESAME_HSM_TOKEN says"
)

# Errors after which the session (or the whole library) is worth reopening once: the token went away and
# came back, the library was re-initialised by another token's reconnect, or the login was lost.
_SESSION_LOST: tuple[type[PKCS11Error], ...] = (
    SessionHandleInvalid,
    SessionClosed,
    DeviceRemoved,
    DeviceError,
    TokenNotPresent,
    GeneralError,
    ObjectHandleInvalid,
    KeyHandleInvalid,
    UserNotLoggedIn,
)


class Later(Enum):
    """What `TokenSession.try_now` answers when the call has to go through the HSM thread instead."""

    LATER = "later"


LATER: Final = Later.LATER


class Needs(Enum):
    """What a call needs besides a key handle, to say whether it may run on the caller's thread."""

    SESSION = "session"  # one short call on the open session (random bytes): may run on the caller's thread
    SEARCH = "search"  # a search or several calls (listing keys): always on the HSM thread


def _is_session_loss(exc: PKCS11Error) -> bool:
    return isinstance(exc, _SESSION_LOST) or type(exc) is PKCS11Error


def _translate(exc: PKCS11Error, *, retry: bool) -> KeyNotFound | HsmUnavailable | None:
    """Our error for a library error, or None when the session is lost and a retry is allowed."""
    name = type(exc).__name__
    if isinstance(exc, NoSuchKey):
        return KeyNotFound("no such key in the HSM")
    if retry and _is_session_loss(exc):
        _log.warning("HSM session lost (%s); reconnecting", name)
        return None
    if not retry:
        _log.error("HSM unavailable after a reconnect (%s)", name)
    if isinstance(exc, _PIN_REFUSED):
        # Never tried again (the token may lock): say which setting to look at, never the PIN.
        return HsmUnavailable(f"HSM call failed: {name}: {PIN_REFUSED_HINT}")
    if isinstance(exc, NoSuchToken):
        # A mistyped label (or a module that is not the HSM's) read `HSM call failed: NoSuchToken` alone.
        return HsmUnavailable(f"HSM call failed: {name}: {NO_LABEL_HINT}")
    # The class name says what failed; library messages are not copied (they may echo search templates).
    return HsmUnavailable(f"HSM call failed: {name}")


class _LostSearches:
    """python-pkcs11 (0.10) leaves a search marked active when C_FindObjectsInit fails (`with SearchIter`:
    its `__enter__` raised, so no `__exit__`); its finaliser then calls C_FindObjectsFinal on the lost
    session, whose error Python prints on stderr, `Exception ignored in: 'pkcs11._pkcs11.OperationContext.
    __del__'` and a traceback, outside the logs. That error says only what `TokenSession.call` already
    handled and logged (the session is lost): a DEBUG line. Every other unraisable goes to the hook that
    was there before."""

    def __init__(self, previous: Callable[[Any], object]) -> None:
        self.previous = previous

    def __call__(self, unraisable: Any) -> None:
        error = unraisable.exc_value
        if isinstance(error, PKCS11Error) and _is_session_loss(error) and "pkcs11" in str(unraisable.object):
            _log.debug("a search of a lost HSM session could not be closed (%s)", type(error).__name__)
            return
        self.previous(unraisable)


def _quiet_lost_searches() -> None:
    """Put `_LostSearches` in front of the process's unraisable hook, once (whoever set it since)."""
    if not isinstance(sys.unraisablehook, _LostSearches):
        sys.unraisablehook = _LostSearches(sys.unraisablehook)


def _collected(failure: KeyNotFound | HsmUnavailable | None) -> KeyNotFound | HsmUnavailable:
    # Cycles through a dead traceback are collected now, on the HSM thread (see `TokenSession.call`).
    gc.collect()
    return failure if failure is not None else HsmUnavailable("HSM call failed")


class TokenSession:
    """The one session on a token: opened on first use, reopened after a loss, closed by its last user."""

    def __init__(self, worker: HsmWorker, token_label: str, pin: str) -> None:
        self.worker = worker
        self.token_label = token_label
        self._pin = pin
        self._session: Any = None
        self._generation = -1  # the worker's generation when `_session` was opened
        self._keys: dict[tuple[ObjectClass, str], Any] = {}
        self._identities: dict[str, bytes] = {}  # OTP key label: its MAC of _IDENTITY_INPUT, for the process
        self._replaced: set[str] = set()  # labels found holding another key (logged once)
        self.users = 0
        self._refusal = ""  # the last failed reconnect's refusal, given again until `_refused_until`
        self._refused_until = 0.0  # time.monotonic()

    def __repr__(self) -> str:
        return f"TokenSession(module={self.worker.module!r}, token_label={self.token_label!r})"

    @property
    def session(self) -> Any:
        """The live python-pkcs11 session (opened if needed, reopened after a re-initialisation)."""
        self._drop_if_stale()
        if self._session is None:
            self._open()
        return self._session

    def secret_key(self, label: str) -> Any:
        """The secret key object labelled `label`, cached until the session is lost."""
        return self._key(ObjectClass.SECRET_KEY, label)

    def private_key(self, label: str) -> Any:
        """The private key object labelled `label`, cached until the session is lost."""
        return self._key(ObjectClass.PRIVATE_KEY, label)

    def key(self, object_class: ObjectClass, label: str) -> Any:
        """The key object of `object_class` labelled `label`, cached until the session is lost."""
        return self._key(object_class, label)

    def _key(self, object_class: ObjectClass, label: str) -> Any:
        # A re-initialisation since the handle was cached drops the cache with the session: SoftHSM numbers
        # objects from 1 again in the order they are found, so a handle cached before it signed with
        # whatever object holds its number now (another token's key: a CI run's failure).
        self._drop_if_stale()
        key = self._keys.get((object_class, label))
        if key is None:
            key = self._found(object_class, label)
            if object_class is ObjectClass.SECRET_KEY and key_versions([label], KeyKind.OTP):
                self._same_key(label, key)
            self._keys[(object_class, label)] = key
        return key

    def _same_key(self, label: str, key: Any) -> None:
        """KeyNotFound when the OTP key found under `label` is not the one this process found there before.

        A key destroyed and made again under its label while serving (by a PIN holder, or a token directory
        copied in from elsewhere) was taken as the same once its handle was found again: right codes read
        WRONG_CODE, counted against their users, and health read SERVING (an outside audit). Its MAC of a
        fixed input, one HSM call when the handle is found, tells it apart: the label is then as good as
        lost, so a code under it answers KEY_VERSION_UNAVAILABLE and no attempt is counted, and a current
        key fails every call that needs it and health, as a boot refuses such a token (decision 0156).
        """
        identity = bytes(key.sign(_IDENTITY_INPUT, mechanism=Mechanism.SHA256_HMAC))
        known = self._identities.setdefault(label, identity)
        if not hmac.compare_digest(known, identity):
            if label not in self._replaced:  # once: every call needing it searches and is refused again
                self._replaced.add(label)
                _log.error("%s is not the key this process used under that label: it is not used", label)
            raise KeyNotFound(f"{label} is another key than the one this process used under that label")

    def _found(self, object_class: ObjectClass, label: str) -> Any:
        """Search the key (HSM thread); not found, once more if the module re-read a restored token."""
        try:
            return self._private(object_class, label)
        except NoSuchKey as exc:
            missing = exc
        if not self.reread_if_restored():
            raise missing
        return self._private(object_class, label)

    def _private(self, object_class: ObjectClass, label: str) -> Any:
        """The one private object (CKA_PRIVATE) of `object_class` under `label`: NoSuchKey, or
        MultipleObjectsReturned. Every key Sésame makes is private; a session without the PIN can put
        public ones under its labels, and one beside the current proof key made every signature fail with
        MultipleObjectsReturned (an outside audit)."""
        template = {Attribute.CLASS: object_class, Attribute.LABEL: label, Attribute.PRIVATE: True}
        found = list(self.session.get_objects(template))  # the search ends before anything is read
        if not found:
            raise NoSuchKey(f"no private {object_class.name} under the label")
        if len(found) > 1:
            raise MultipleObjectsReturned(f"{len(found)} private {object_class.name} under the label")
        return found[0]

    def reread_if_restored(self) -> bool:
        """After a key was not found: whether the module re-read the token because its key files changed
        since it last read them (a restore: `HsmWorker.reread_if_restored`); search again if so."""
        return self.worker.reread_if_restored()

    def signed(self, key: Any, mechanism: int, data: bytes) -> bytes:
        """`key.sign(data, mechanism=mechanism)`, with the GIL held where the module allows it (decision
        0086); a refusal there is made again through python-pkcs11, which raises it by class."""
        direct = self.worker.direct
        if direct is not None:
            signature = direct.sign(self.session.handle, key.handle, mechanism, data)
            if signature is not None:
                return signature
        return bytes(key.sign(data, mechanism=mechanism))

    def forget_key(self, label: str) -> None:
        """Drop the cached handles of a label (after a key was created or destroyed under it); the key found
        under it next must still be the one found before (`_same_key`)."""
        for cached in [cached for cached in self._keys if cached[1] == label]:
            del self._keys[cached]

    def call(self, op: Callable[[TokenSession], T]) -> T:
        """Run `op`; after a session loss reconnect and retry once; translate every library error.

        Library exceptions are translated outside the `except` blocks and never chained: their tracebacks
        hold python-pkcs11 objects (a search left open, say) whose finalisers call the module, and those
        must die here, on the HSM thread, not wherever our exception is dropped.

        Within RECONNECT_HOLD of a reconnect that failed, the call is refused as that one was, without
        calling the module or logging: one reconnect a second at most while the HSM is away (decision 0110).
        """
        if self._refusal and time.monotonic() < self._refused_until:
            raise HsmUnavailable(self._refusal)
        # A session to open (the first call, or the one after a reconnect that failed) is a reconnect too:
        # its failure holds the next calls as a reconnect's does. Read after a failed reconnect, every call
        # opened the session again, a login with a refused PIN each (an outside audit).
        opening = self._session is None or self._generation != self.worker.generation
        try:
            return op(self)
        except PKCS11Error as exc:
            failure, refused_pin = _translate(exc, retry=not opening), isinstance(exc, _PIN_REFUSED)
        if failure is None:
            try:
                self._reconnect()
                return op(self)
            except PKCS11Error as exc:
                failure, refused_pin = _translate(exc, retry=False), isinstance(exc, _PIN_REFUSED)
        elif not opening:  # a call on an open session refused: the next call is not held
            raise _collected(failure)
        if isinstance(failure, HsmUnavailable):
            # A refused PIN is never tried again by this process: an HSM locks the token after a few failed
            # logins, and SoftHSM keeps refusing the right PIN given back until it re-reads the token.
            # Fixed by a restart with the right PIN (operations.md, SesameHsmErrors).
            hold = math.inf if refused_pin else RECONNECT_HOLD
            if refused_pin:
                _log.error("no login to the HSM is tried again by this process: restart with the right PIN")
            self._refusal, self._refused_until = str(failure), time.monotonic() + hold
        raise _collected(failure)

    def try_now(
        self, op: Callable[[TokenSession], T], needs: tuple[ObjectClass, str] | Needs
    ) -> T | Literal[Later.LATER]:
        """Run `op` on the caller's thread if that costs no wait, else LATER (then `call` on the HSM thread).

        Only when the module's lock is free (never wait for a search or a ceremony on the event loop), the
        session is open in the current generation and the key handle `op` needs is cached: `op` then makes
        one short call (a MAC is about 20 µs) and no search, whose finaliser could run later outside the
        lock. Any library error is LATER too: `call` repeats the operation under the reconnect policy and
        translates it.
        """
        if needs is Needs.SEARCH or not self.worker.lock.acquire(blocking=False):
            return LATER
        try:
            live = self._session is not None and self._generation == self.worker.generation
            if not live or (needs is not Needs.SESSION and needs not in self._keys):
                return LATER
            try:
                return op(self)
            except PKCS11Error:
                pass
            # Cycles through the dead traceback are collected now, under the lock (see `call`).
            gc.collect()
            return LATER
        finally:
            self.worker.lock.release()

    def close(self) -> None:
        """Log out and close the session; errors are ignored (the session may already be gone)."""
        if self._generation != self.worker.generation:
            # Its handle may now name another token's session: closing it would close that one.
            self._drop()
            return
        session, self._session = self._session, None
        self._keys.clear()
        if session is not None:
            try:
                session.close()
            except PKCS11Error as exc:
                _log.debug("closing a lost HSM session: %s", type(exc).__name__)

    def _drop_if_stale(self) -> None:
        if self._session is not None and self._generation != self.worker.generation:
            self._drop()

    def _drop(self) -> None:
        """Forget a session that died with a re-initialisation, without calling the module on its handle."""
        self._session = None
        self._keys.clear()

    def _reconnect(self) -> None:
        self.close()
        self._open()

    def _open(self) -> None:
        """Find the token, open a session and log in (HSM thread), trying again a few times.

        A failure other than the PIN's is tried again after re-initialising the library: SoftHSM rereads its
        token directory only at C_Initialize (a token created since, or a stale library); and while another
        process logs in to the same token (the workers of one `sesame serve` at boot), SoftHSM may read the
        token half-written and find no token there, or one whose user PIN is not initialised (decision 0064).
        Re-initialising invalidates every session of this module in the process; the other tokens' sessions
        reconnect on their next call through this same policy. A PIN refused is never tried again: an HSM
        may lock the token after a few."""
        for attempt in range(OPEN_ATTEMPTS):
            try:
                self._open_once()
            except _PIN_REFUSED:
                raise
            except PKCS11Error as exc:
                if attempt == OPEN_ATTEMPTS - 1:
                    raise
                _log.debug("HSM token %r not opened (%s); trying again", self.token_label, type(exc).__name__)
                self.worker.reinitialize()
                if attempt > 0:  # jittered, so that processes racing at boot do not race again
                    time.sleep(OPEN_PAUSE * attempt * (0.5 + secrets.randbelow(1000) / 1000))
            else:
                return

    def _open_once(self) -> None:
        token = self.worker.lib.get_token(token_label=self.token_label)
        try:
            # R/W because key ceremonies (init, rotate) in this process share the session.
            self._session = token.open(rw=True, user_pin=self._pin)
        except UserAlreadyLoggedIn:
            # Login state is per token and application: a session opened now inherits it.
            self._session = token.open(rw=True)
        self._generation = self.worker.generation
        self._keys.clear()
        _log.info("HSM session open on token %r", self.token_label)

    def same_pin(self, pin: str) -> bool:
        """Whether `pin` is the one this session logged in with (compared in constant time)."""
        return hmac.compare_digest(self._pin.encode(), pin.encode())


def acquire_token(worker: HsmWorker, token_label: str, pin: str) -> TokenSession:
    """Take a reference on the token's shared session (HSM thread). HsmUnavailable if it cannot open."""
    _quiet_lost_searches()
    token = worker.tokens.get(token_label)
    if token is None:
        token = worker.tokens[token_label] = TokenSession(worker, token_label, pin)
    elif not token.same_pin(pin):
        raise HsmUnavailable(f"token {token_label!r} is already open in this process with another PIN")
    token.users += 1
    try:
        token.call(lambda live: live.session)
    except Exception:
        release_token(token)
        raise
    return token


def release_token(token: TokenSession) -> None:
    """Drop a reference; the last one closes the session (HSM thread)."""
    token.users -= 1
    if token.users <= 0:
        token.close()
        token.worker.tokens.pop(token.token_label, None)
