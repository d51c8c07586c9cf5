"""SMS templates from files: defaults load, an operator directory replaces them, a bad one stops the boot."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

import pytest

from sesame.server.config import Settings
from sesame.server.domain import sms_text
from sesame.server.domain.errors import ConfigurationError
from sesame.server.domain.operation import AddBeneficiary, CreditTransfer, Login, Payee
from sesame.server.domain.segments import Encoding, measure
from sesame.server.domain.sms_budget import A_DAY, WorstCase, longest_amount, longest_bank_name, longest_when
from sesame.server.domain.sms_templates import LOCALES, Kind, check, default_templates, load

DEFAULTS = Path(str(resources.files("sesame.server") / "sms_templates"))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A copy of the default templates an operator may edit."""
    copy = tmp_path / "templates"
    shutil.copytree(DEFAULTS, copy)
    return copy


def booted(folder: Path, **more: str) -> Settings:
    return Settings.from_env({"SESAME_SMS_TEMPLATES_DIR": str(folder), **more})


def test_the_defaults_hold_every_kind_and_locale() -> None:
    """The package ships one template per kind and locale, and a warning per locale."""
    templates = default_templates()
    assert set(templates.templates) == {(kind, locale) for kind in Kind for locale in LOCALES}
    assert set(templates.warnings) == set(LOCALES)


def test_an_operators_directory_replaces_the_words(folder: Path) -> None:
    """A changed file is what the code SMS says, as the flows render it with the booted policy."""
    (folder / "en" / "login.txt").write_text("{bank} code {code}: LOG IN. {warning}\n", encoding="utf-8")
    settings = booted(folder)
    ctx = sms_text.SmsContext("MaBanque", "482913", 5, "en", settings.policy.sms_templates)
    assert sms_text.render(Login(), ctx).startswith("MaBanque code 482913: LOG IN. This code never")
    assert settings.lifecycle.sms_templates is settings.policy.sms_templates


@pytest.mark.parametrize(
    ("kind", "text", "reason"),
    [
        (Kind.LOGIN, "{bank}: LOG IN. {warning}", "lacks {code}"),
        (Kind.LOGIN, "{bank}: code {code}. LOG IN.", "lacks {warning}"),
        (Kind.CREDIT_TRANSFER, "code {code} SEND {amount}. {warning}", "lacks {iban}, {payee}"),
        (Kind.PHONE_CHANGED, "{bank}: code {code}, number {phone}", "names {code}"),
        (Kind.LOGIN, "code {code} {warning} {user_id}", "names {user_id}"),
        (Kind.LOGIN, "code {code} {warning} {code.__class__}", "names {code.__class__}"),
        (Kind.LOGIN, "code {code:>20} {warning}", "formats a field"),
        (Kind.LOGIN, "code {code!r} {warning}", "formats a field"),
        (Kind.LOGIN, "code {code} {warning} {", "brace"),
        (Kind.USER_BLOCKED, "", "is empty"),
    ],
)
def test_a_bad_template_is_refused_with_its_reason(kind: Kind, text: str, reason: str) -> None:
    """Missing code, warning or subject; an unknown, dotted or formatted field; a stray brace; nothing."""
    found = check(kind, text)
    assert found is not None
    assert reason in found


def test_literal_braces_are_written_doubled() -> None:
    """`{{` and `}}` are a brace of the text, not a field."""
    assert check(Kind.LOGIN, "{{MaBanque}} code {code}. {warning}") is None


def test_a_bad_file_stops_the_boot_naming_the_file_and_reason(folder: Path) -> None:
    """A template without its code refuses the boot with the file's path and what is wrong."""
    (folder / "fr" / "credit_transfer.txt").write_text("ENVOYER {amount} à {payee} (IBAN {iban}). {warning}")
    with pytest.raises(ConfigurationError) as caught:
        booted(folder)
    assert f"{folder / 'fr' / 'credit_transfer.txt'} lacks {{code}}" in str(caught.value)


def test_missing_and_unknown_files_are_named(folder: Path) -> None:
    """Every missing file and every file no kind reads (a misspelt name) is listed at once."""
    (folder / "en" / "login.txt").rename(folder / "en" / "log_in.txt")
    (folder / "fr" / "warning.txt").unlink()
    with pytest.raises(ConfigurationError) as caught:
        load(folder)
    message = str(caught.value)
    assert f"{folder / 'en' / 'login.txt'} is missing" in message
    assert f"{folder / 'en' / 'log_in.txt'} is no template" in message
    assert f"{folder / 'fr' / 'warning.txt'} is missing" in message


def test_a_directory_that_is_not_there_stops_the_boot(tmp_path: Path) -> None:
    """SESAME_SMS_TEMPLATES_DIR must name a directory."""
    with pytest.raises(ConfigurationError, match="SESAME_SMS_TEMPLATES_DIR"):
        booted(tmp_path / "nowhere")


def test_a_template_too_long_for_the_budget_stops_the_boot(folder: Path) -> None:
    """A login text of three parts with the longest code and validity is refused, with its parts."""
    long_text = "{bank}: code {code} pour vous CONNECTER. " + "Soyez prudent. " * 12 + "{warning}"
    (folder / "fr" / "login.txt").write_text(long_text, encoding="utf-8")
    with pytest.raises(ConfigurationError) as caught:
        booted(folder)
    assert f"{folder / 'fr' / 'login.txt'} takes 3 gsm7 parts" in str(caught.value)


def test_a_template_outside_gsm7_is_measured_in_ucs2(folder: Path) -> None:
    """One letter outside GSM-7 in the bank's own words makes the text UCS-2: far over 2 parts, refused."""
    text = (DEFAULTS / "fr" / "login.txt").read_text(encoding="utf-8").replace("CONNECTER", "CONNECTER ç")
    (folder / "fr" / "login.txt").write_text(text, encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"takes [0-9]+ ucs2 parts"):
        booted(folder)


def test_a_budget_of_one_part_refuses_the_defaults() -> None:
    """No code SMS with its warning fits one part: SESAME_SMS_MAX_PARTS=1 refuses to boot."""
    with pytest.raises(ConfigurationError, match="over the budget of 1"):
        Settings.from_env({"SESAME_SMS_MAX_PARTS": "1"})


def test_a_long_bank_name_that_leaves_no_room_stops_the_boot() -> None:
    """The bank's name is in every text: one too long for the budget is refused, not cut at send time."""
    with pytest.raises(ConfigurationError, match="SESAME_BANK_NAME"):
        Settings.from_env({"SESAME_BANK_NAME": "Banque Populaire du Grand Ouest et de Bretagne"})


def test_a_larger_budget_admits_what_two_parts_do_not() -> None:
    """The same long bank name boots with a budget of 3 parts."""
    name = "Banque Populaire du Grand Ouest et de Bretagne"
    settings = Settings.from_env({"SESAME_BANK_NAME": name, "SESAME_SMS_MAX_PARTS": "3"})
    assert settings.policy.sms_templates.max_parts == 3


def test_a_template_outside_gsm7_keeps_the_names_letters(folder: Path) -> None:
    """When the bank's own words are UCS-2, transliterating the name gains nothing: it keeps its ç."""
    text = (
        (DEFAULTS / "fr" / "add_beneficiary.txt").read_text(encoding="utf-8").replace("AJOUTER", "AJOUTER ç")
    )
    (folder / "fr" / "add_beneficiary.txt").write_text(text.replace("AJOUTER", "AJOUTER ç"), encoding="utf-8")
    ctx = sms_text.SmsContext("MaBanque", "482913", 5, "fr", load(folder, 6))
    rendered = sms_text.render(AddBeneficiary(Payee("François", "FR7630006000011234567890189")), ctx)
    assert '"François"' in rendered
    assert measure(rendered).encoding is Encoding.UCS2


def test_the_room_docs_sms_md_gives_the_bank_name_is_what_the_boot_accepts() -> None:
    """At 8 digits and 10 minutes, a bank name of the documented length boots and one more refuses."""
    room = longest_bank_name(default_templates(), WorstCase("MaBanque"))
    longest = {"SESAME_CODE_DIGITS": "8", "SESAME_CODE_TTL_SECONDS": "600"}
    assert Settings.from_env({**longest, "SESAME_BANK_NAME": "B" * room}).policy.bank_name == "B" * room
    with pytest.raises(ConfigurationError, match="SESAME_BANK_NAME"):
        Settings.from_env({**longest, "SESAME_BANK_NAME": "B" * (room + 1)})


def test_a_template_that_cannot_print_the_payee_answer_stops_the_boot(folder: Path) -> None:
    """A transfer text that fits only once the bank's "name does not match" gave way is refused at boot,
    naming the file (an outside audit, AR1: the answer was dropped silently, by the longest values and by a
    long name)."""
    text = (DEFAULTS / "fr" / "credit_transfer.txt").read_text(encoding="utf-8")
    (folder / "fr" / "credit_transfer.txt").write_text(
        text.replace("Valable", "Valable " + "x" * 20), "utf-8"
    )
    with pytest.raises(ConfigurationError) as caught:
        booted(folder)
    assert f"{folder / 'fr' / 'credit_transfer.txt'} cannot print the bank's payee answer" in str(
        caught.value
    )


def test_the_boot_measures_a_new_payee_added_today() -> None:
    """Found from outside (AS5): the boot measured a payee added two days before ("le 29/12 à ..."), but the
    French "aujourd'hui à ..." is longer: a bank name the boot accepted lost the warning answer of a
    transfer to a payee added today. The longest phrasing is measured."""
    assert sms_text.added_when(longest_when("fr"), "fr").startswith("aujourd'hui")
    name = "W" * longest_bank_name(default_templates(), WorstCase("MaBanque", 8))
    transfer = CreditTransfer(longest_amount("fr"), Payee("W" * 40, "FR7630006000011234567890189"), "t")
    today = sms_text.NewPayee(A_DAY, A_DAY)
    ctx = sms_text.SmsContext(
        name, "9" * 8, 10, "fr", new_payee=today, flagged=True, payee_verification="no_match"
    )
    assert "nom ne correspond PAS" in sms_text.render(transfer, ctx)
