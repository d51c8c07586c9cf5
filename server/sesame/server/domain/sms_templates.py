"""The SMS templates: one text per kind of message and locale, read from files an operator may replace.

A directory holds `<locale>/<kind>.txt` for every locale (fr, en) and kind, and `<locale>/warning.txt`, the
anti-scam warning every code SMS carries through `{warning}`. The package's own directory
(`sesame/server/sms_templates/`) holds the defaults; `SESAME_SMS_TEMPLATES_DIR` points at another one,
which must hold every file (a missing, unknown or bad file stops the boot, named with the reason).

A template is the file's text without its surrounding white space, with `{field}` where a value goes (the
fields each kind may use are in `FIELDS`) and `{{` `}}` for a literal brace. Every field but `{bank}`,
`{minutes}` and `{payee_check}` must appear: a code SMS without its code or its warning, a notice without
what it is about, cannot be configured; and a notice has no `{code}`. Whether each fits the segment budget
with the longest values is checked at boot too (`sms_budget`).
"""

from __future__ import annotations

import enum
import functools
import hashlib
import string
from dataclasses import dataclass, field
from importlib import resources
from importlib.resources.abc import Traversable
from typing import Final

from sesame.server.domain.errors import ConfigurationError
from sesame.server.domain.operation import OperationType

LOCALES: Final = ("fr", "en")
DEFAULT_MAX_PARTS: Final = 2
WARNING_FILE: Final = "warning.txt"


class Kind(enum.StrEnum):
    """A kind of SMS: one per operation a code authorises, and the notices that carry no code."""

    LOGIN = "login"
    CREDIT_TRANSFER = "credit_transfer"
    ADD_BENEFICIARY = "add_beneficiary"
    CHANGE_PHONE = "change_phone"
    # A transfer the risk rules flagged (WARN or HOLD) to a payee added in the last 72 hours: the strongest
    # wording, naming the payee as new and when it was added, in place of the usual warning (decision 0032).
    CREDIT_TRANSFER_NEW_PAYEE = "credit_transfer_new_payee"
    # Any other code the risk rules flagged (WARN or HOLD), whatever the reason: the strongest wording, an
    # alert in place of the usual warning (decision 0043).
    LOGIN_ALERT = "login_alert"
    CREDIT_TRANSFER_ALERT = "credit_transfer_alert"
    ADD_BENEFICIARY_ALERT = "add_beneficiary_alert"
    CHANGE_PHONE_ALERT = "change_phone_alert"
    PHONE_CHANGED = "phone_changed"  # to the old number, after a change of the secure number
    BENEFICIARY_ADDED = "beneficiary_added"  # after a verified add_beneficiary challenge
    USER_BLOCKED = "user_blocked"  # after wrong codes in a row (RTS Art. 4(4))

    @classmethod
    def of(cls, operation_type: OperationType) -> Kind:
        """The kind of a code SMS for this operation type."""
        return cls(operation_type.name.lower())

    @classmethod
    def alert_of(cls, operation_type: OperationType) -> Kind:
        """The kind of a code SMS for this operation type when the risk rules flagged it (WARN, HOLD)."""
        return cls(f"{operation_type.name.lower()}_alert")


_CODE_FIELDS: Final = frozenset({"bank", "code", "minutes", "warning"})
FIELDS: Final[dict[Kind, frozenset[str]]] = {
    Kind.LOGIN: _CODE_FIELDS,
    Kind.CREDIT_TRANSFER: _CODE_FIELDS | {"amount", "payee", "payee_check", "iban"},
    Kind.ADD_BENEFICIARY: _CODE_FIELDS | {"payee", "payee_check", "iban"},
    Kind.CHANGE_PHONE: _CODE_FIELDS | {"phone"},
    Kind.CREDIT_TRANSFER_NEW_PAYEE: _CODE_FIELDS - {"warning"}
    | {"amount", "payee", "payee_check", "iban", "when"},
    Kind.LOGIN_ALERT: _CODE_FIELDS - {"warning"},
    Kind.CREDIT_TRANSFER_ALERT: _CODE_FIELDS - {"warning"} | {"amount", "payee", "payee_check", "iban"},
    Kind.ADD_BENEFICIARY_ALERT: _CODE_FIELDS - {"warning"} | {"payee", "payee_check", "iban"},
    Kind.CHANGE_PHONE_ALERT: _CODE_FIELDS - {"warning"} | {"phone"},
    Kind.PHONE_CHANGED: frozenset({"bank", "phone"}),
    Kind.BENEFICIARY_ADDED: frozenset({"bank", "payee", "iban", "date", "time"}),
    Kind.USER_BLOCKED: frozenset({"bank", "date", "time"}),
}
# May be left out: the bank's name and the validity, and the Verification of Payee answer after the payee's
# name (decision 0099; a deployment's templates written before it still boot).
_OPTIONAL: Final = frozenset({"bank", "minutes", "payee_check"})


@dataclass(frozen=True, slots=True)
class Template:
    """One checked template and the file it came from."""

    kind: Kind
    locale: str
    text: str
    source: str
    sha256: str = ""  # hex SHA-256 of the file's bytes as read: the template's version, journaled per send

    def fill(self, fields: dict[str, str]) -> str:
        """The text with its fields' values (every field it names is checked to be a plain name)."""
        return self.text.format_map(fields)


@dataclass(frozen=True, slots=True)
class SmsTemplates:
    """Every template and warning of a deployment, and the most parts a text may take."""

    templates: dict[tuple[Kind, str], Template] = field(repr=False)  # a repr names the directory instead
    warnings: dict[str, str] = field(repr=False)
    max_parts: int = DEFAULT_MAX_PARTS
    source: str = ""  # the directory read
    warning_sha256: dict[str, str] = field(default_factory=dict, repr=False)  # each warning file's SHA-256

    def get(self, kind: Kind, locale: str) -> Template:
        """The template of this kind in this locale."""
        return self.templates[kind, locale]

    def warning(self, locale: str) -> str:
        """The anti-scam warning of this locale."""
        return self.warnings[locale]


def check(kind: Kind, text: str) -> str | None:
    """Why `text` cannot be a template of `kind`, or None when it can."""
    if not text:
        return "is empty"
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        return f"has a brace that opens no field ({exc}); write {{{{ and }}}} for a brace"
    named = [(name, spec, conv) for _, name, spec, conv in parsed if name is not None]
    allowed = FIELDS[kind]
    unknown = sorted({name for name, _, _ in named if name not in allowed})
    if unknown:
        return f"names {_fields(unknown)}, which a {kind} SMS does not have (it may use {_fields(allowed)})"
    if any(spec or conv for _, spec, conv in named):
        return "formats a field (`!` or `:`): fields are written {name} only"
    missing = sorted(allowed - _OPTIONAL - {name for name, _, _ in named})
    if missing:
        return f"lacks {_fields(missing)}"
    return None


def check_warning(text: str) -> str | None:
    """Why `text` cannot be a warning (plain text, no field), or None when it can."""
    if not text:
        return "is empty"
    if "{" in text or "}" in text:
        return "has a brace: the warning is plain text, with no field"
    return None


def load(directory: Traversable, max_parts: int = DEFAULT_MAX_PARTS) -> SmsTemplates:
    """Read and check every template under `directory`. ConfigurationError lists every bad file."""
    problems: list[str] = []
    loaded = load_into(directory, max_parts, problems)
    if loaded is None:
        raise ConfigurationError("invalid SMS templates:\n  - " + "\n  - ".join(problems))
    return loaded


def load_into(directory: Traversable, max_parts: int, problems: list[str]) -> SmsTemplates | None:
    """Read and check every template under `directory`; None, each bad file added to `problems`, if any is."""
    own: list[str] = []
    templates: dict[tuple[Kind, str], Template] = {}
    warnings: dict[str, str] = {}
    digests: dict[str, str] = {}
    warning_sha256: dict[str, str] = {}
    for locale in LOCALES:
        folder = directory / locale
        own.extend(_unknown_files(folder))
        for kind in Kind:
            source = str(folder / f"{kind}.txt")
            text = _read(folder / f"{kind}.txt", own, digests)
            if text is not None:
                reason = check(kind, text)
                if reason is None:
                    templates[kind, locale] = Template(kind, locale, text, source, digests[source])
                else:
                    own.append(f"{source} {reason}")
        source = str(folder / WARNING_FILE)
        text = _read(folder / WARNING_FILE, own, digests)
        if text is not None:
            reason = check_warning(text)
            if reason is None:
                warnings[locale] = text
                warning_sha256[locale] = digests[source]
            else:
                own.append(f"{source} {reason}")
    problems.extend(f"SMS template {problem}" for problem in own)
    if own:
        return None
    return SmsTemplates(templates, warnings, max_parts, str(directory), warning_sha256)


@functools.cache
def default_templates() -> SmsTemplates:
    """The templates the package ships, read once (a budget of DEFAULT_MAX_PARTS parts)."""
    return load(resources.files("sesame.server") / "sms_templates")


def _read(path: Traversable, problems: list[str], digests: dict[str, str]) -> str | None:
    """The file's text without surrounding white space, or None (and a problem) when it cannot be read; the
    SHA-256 of its bytes noted in `digests` under its name (read once: the digest is of the text used)."""
    source = str(path)
    try:
        raw = path.read_bytes()
        digests[source] = hashlib.sha256(raw).hexdigest()
        return raw.decode("utf-8").strip()
    except FileNotFoundError:
        problems.append(f"{source} is missing")
    except UnicodeDecodeError:
        problems.append(f"{source} is not UTF-8")
    except OSError as exc:
        problems.append(f"{source} cannot be read ({exc.strerror})")
    return None


def _unknown_files(folder: Traversable) -> list[str]:
    """Files no kind reads, named: `login.text` beside a missing `login.txt` says what went wrong."""
    if not folder.is_dir():
        return []
    expected = {f"{kind}.txt" for kind in Kind} | {WARNING_FILE}
    unknown = sorted(entry.name for entry in folder.iterdir() if entry.name not in expected)
    return [f"{folder / name} is no template (a locale holds {_listed(expected)})" for name in unknown]


def _listed(names: frozenset[str] | set[str]) -> str:
    return ", ".join(sorted(names))


def _fields(names: frozenset[str] | list[str]) -> str:
    return ", ".join(f"{{{name}}}" for name in sorted(names))
