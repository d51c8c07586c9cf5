"""SMS text: rendered from the operation, with the action verb, amount, payee, validity and warning."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from sesame.server.domain.operation import (
    AddBeneficiary,
    ChangePhone,
    CreditTransfer,
    Login,
    Money,
    Payee,
    digest,
)
from sesame.server.domain.segments import measure
from sesame.server.domain.sms_templates import default_templates
from sesame.server.domain.sms_text import (
    PRINTED_NAME,
    SHORTEST_NAME,
    NewPayee,
    SmsContext,
    beneficiary_added_notice,
    format_amount,
    phone_changed_notice,
    printed_name,
    render,
    rendered,
    user_blocked_notice,
)
from sesame.server.domain.validation import MAX_AMOUNT_MINOR

PAYEE = Payee("Jean DUPONT", "FR7630006000011234567890189")
FR = SmsContext(bank_name="MaBanque", code="482913", validity_minutes=5, locale="fr")
EN = SmsContext(bank_name="MaBanque", code="482913", validity_minutes=5, locale="en")
# GSM 03.38 basic character set: a text made only of these fits 160 characters per segment.
GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmnopqrstuvwxyzäöñüà"
)


def test_transfer_names_verb_amount_payee_and_masked_iban() -> None:
    """A transfer SMS says ENVOYER, the exact amount, the payee and the IBAN's ends."""
    text = render(CreditTransfer(Money("EUR", 125000), PAYEE, "tx"), FR)
    assert text.startswith(
        'MaBanque: code 482913 pour ENVOYER 1 250,00 EUR à "Jean DUPONT" (IBAN FR76...0189)'
    )
    assert "Valable 5 min." in text
    assert "7630006000011234567" not in text


@pytest.mark.parametrize(
    ("operation", "verb"),
    [
        (Login(), "CONNECTER"),
        (AddBeneficiary(PAYEE), 'AJOUTER le bénéficiaire "Jean DUPONT"'),
        (ChangePhone("+33698765432"), "CHANGER votre numéro sécurisé pour le +33*******32"),
    ],
)
def test_each_operation_has_its_verb(operation: Login | AddBeneficiary | ChangePhone, verb: str) -> None:
    """The action is named in capitals, never as 'valider' or 'annuler'."""
    text = render(operation, FR)
    assert verb in text
    assert "VALIDER" not in text.upper().split("CODE", 1)[1].split(".")[0]


def test_french_warning_says_never_asked_and_never_cancels() -> None:
    """The anti-scam warning is always there."""
    text = render(Login(), FR)
    assert "ne le demande jamais" in text
    assert "n'annule ni ne bloque rien" in text
    assert "http" not in text
    assert "www" not in text


def test_english_text() -> None:
    """The English template has the same parts."""
    text = render(CreditTransfer(Money("EUR", 125000), PAYEE, "tx"), EN)
    assert 'SEND EUR 1,250.00 to "Jean DUPONT"' in text
    assert "never ask you for it" in text


@pytest.mark.parametrize("locale", ["fr", "en"])
def test_texts_stay_in_gsm7(locale: str) -> None:
    """No character forces UCS-2 (which would cut a segment to 70 characters)."""
    ctx = FR if locale == "fr" else EN
    for operation in (Login(), CreditTransfer(Money("EUR", 1), PAYEE, "t"), AddBeneficiary(PAYEE)):
        assert set(render(operation, ctx)) <= GSM7


@pytest.mark.parametrize(
    ("money", "fr", "en"),
    [
        (Money("EUR", 125000), "1 250,00 EUR", "EUR 1,250.00"),
        (Money("EUR", 5), "0,05 EUR", "EUR 0.05"),
        (Money("JPY", 1500), "1 500 JPY", "JPY 1,500"),
        (Money("KWD", 12345), "12,345 KWD", "KWD 12.345"),
    ],
)
def test_amounts_use_the_currency_minor_unit(money: Money, fr: str, en: str) -> None:
    """Decimals follow ISO 4217; French groups thousands with spaces."""
    assert format_amount(money, "fr") == fr
    assert format_amount(money, "en") == en


@pytest.mark.parametrize(
    ("locale", "said"),
    [
        ("fr", "MaBanque: votre numéro sécurisé a été changé pour le +33*******32. Pas vous ? Appelez"),
        ("en", "MaBanque: your secure number was changed to +33*******32. Not you? Call"),
    ],
)
def test_the_phone_change_notice_names_the_new_number_masked(locale: str, said: str) -> None:
    """The notice to the old number says what changed, to which masked number, and whom to call."""
    assert phone_changed_notice("MaBanque", "+33698765432", locale).startswith(said)


@pytest.mark.parametrize("locale", ["fr", "en"])
def test_the_phone_change_notice_fits_gsm7_and_holds_no_code(locale: str) -> None:
    """Every character is in GSM 03.38 and no run of digits could be taken for a code."""
    text = phone_changed_notice("MaBanque", "+33698765432", locale)
    assert set(text) <= GSM7
    assert "code " not in text.split(".")[0]


@pytest.mark.parametrize(
    ("locale", "said"),
    [
        (
            "fr",
            "MaBanque: après plusieurs codes erronés, l'authentification par SMS est bloquée jusqu'à 12:16",
        ),
        ("en", "MaBanque: after several wrong codes, authentication by text is blocked until 12:16 UTC"),
    ],
)
def test_the_block_alert_says_until_when_rounded_up_to_the_minute(locale: str, said: str) -> None:
    """The payer's alert names the block's end, never earlier than it is (12:15:01 reads 12:16)."""
    until = datetime(2026, 11, 25, 12, 15, 1, tzinfo=UTC)
    assert user_blocked_notice("MaBanque", until, locale).startswith(said)


@pytest.mark.parametrize("locale", ["fr", "en"])
def test_the_block_alert_fits_gsm7_and_holds_no_code(locale: str) -> None:
    """Every character is in GSM 03.38 and no run of six digits could be taken for a code."""
    text = user_blocked_notice("MaBanque", datetime(2026, 11, 25, 12, 15, tzinfo=UTC), locale)
    assert set(text) <= GSM7
    assert not re.search(r"\d{6}", text)


SPOOF = "ANNULATION du virement precedent. Code de blocage"


@pytest.mark.parametrize(
    "operation",
    [
        CreditTransfer(Money("EUR", 100), Payee(SPOOF, PAYEE.iban), "tx"),
        AddBeneficiary(Payee(SPOOF, PAYEE.iban)),
    ],
)
@pytest.mark.parametrize("ctx", [FR, EN])
def test_a_payee_name_cannot_write_a_sentence_of_its_own(
    operation: CreditTransfer | AddBeneficiary, ctx: SmsContext
) -> None:
    """A name written as the bank's words loses its sentence punctuation and stays inside quotes."""
    text = render(operation, ctx)
    assert SPOOF not in text
    assert '"ANNULATION du virement precedent Code de"' in text


@pytest.mark.parametrize(
    ("name", "printed"),
    [
        ("Jean DUPONT", '"Jean DUPONT"'),
        ("Zoé O'Neil-Durand & Fils", '"Zoé O\'Neil-Durand & Fils"'),
        ("Code 482913: urgent!", '"Code urgent"'),
        ('Jean" pour ANNULER "x', '"Jean pour ANNULER x"'),
        ("S.A.R.L. Martin (Lyon)", '"S A R L Martin Lyon"'),
        # Cyrillic I and Greek Rho, look-alikes of Latin I and P: written romanized (decision 0168)
        ("\u0406van \u03a1etrov", '"Ivan Retrov"'),
        ("1234 !!", '"-"'),
        ("Jean'' pour RECEVOIR de ''Jean", '"Jean pour RECEVOIR de Jean"'),  # no '' passing for a quote
        ("O''Neil ' d'''Arc", "\"O'Neil d'Arc\""),
        # A Latin letter outside the BMP (an outside audit's): UCS-2 writes it in two units, which Kannel's
        # concatenation cut apart, and few phones draw it.
        ("Jean \U0001df09\U0001df09 DUPONT", '"Jean DUPONT"'),
    ],
)
def test_the_printed_name_keeps_letters_spaces_and_a_few_marks(name: str, printed: str) -> None:
    """Digits, sentence punctuation, quotes and letters of other scripts than Latin, Greek and Cyrillic become
    spaces; what is left is quoted."""
    assert printed_name(name) == printed


def test_the_printed_name_is_bounded_at_a_word() -> None:
    """A long name is cut at the last whole word within the bound."""
    name = "Association des amis du patrimoine ferroviaire de la vallee"
    printed = printed_name(name)
    assert len(printed) <= PRINTED_NAME + 2
    assert printed == '"Association des amis du patrimoine"'


def test_the_digest_keeps_the_name_the_caller_sent() -> None:
    """Two names printed alike are two operations: the digest is over the name as sent."""
    dotted = CreditTransfer(Money("EUR", 100), Payee("S.A. Martin", PAYEE.iban), "tx")
    plain = CreditTransfer(Money("EUR", 100), Payee("S A Martin", PAYEE.iban), "tx")
    assert render(dotted, FR) == render(plain, FR)
    assert digest(dotted) != digest(plain)


@pytest.mark.parametrize(
    ("name", "printed"),
    [
        ("François Lefèvre", '"Francois Lefèvre"'),
        ("Œuvre d'Orient", '"OEuvre d\'Orient"'),
        ("Łukasz Wałęsa", '"Lukasz Walesa"'),
        ("Þórr Ðalsson", '"THorr Dalsson"'),
        ("Søren Ærø Müller", '"Søren Ærø Müller"'),
    ],
)
def test_letters_outside_gsm7_are_written_as_their_base_letters(name: str, printed: str) -> None:
    """A name with ç, œ, ł... keeps the SMS in GSM-7: each such letter becomes the letters it stands for."""
    text = render(AddBeneficiary(Payee(name, PAYEE.iban)), FR)
    assert printed in text
    assert set(text) <= GSM7


@pytest.mark.parametrize(
    ("name", "printed"),
    [
        ("Иванов Пётр", '"Ivanov Petr"'),
        ("ЖАННА Щукина", '"ZHANNA Shchukina"'),  # a word in capitals stays in capitals
        ("Игорь Юрьевич", '"Igor Iurevich"'),  # the soft sign writes nothing
        ("Ђорђе Јовановић", '"Dorde Jovanovic"'),  # Serbian
        ("Олександр Ґонта-Їжак", '"Oleksandr Gonta-Izhak"'),  # Ukrainian
        ("ΠΑΠΑΔΟΠΟΥΛΟΥ Α.Ε.", '"PAPADOPOULOU A E"'),  # noqa: RUF001 (Greek capitals)
        ("Ευάγγελος Αυγουστής", '"Evangelos Avgoustis"'),  # the pairs eu, gg, au, ou; accents off
        ("Ταϋγέτη", '"Taygeti"'),  # a diaeresis parts a pair: a-y are two vowels, not the pair av
        ("\u0435\u0301\u043b\u043a\u0430", '"élka"'),  # a stress mark after a romanized letter joins it
    ],
)
def test_a_greek_or_cyrillic_name_is_printed_romanized(name: str, printed: str) -> None:
    """AR3, an outside audit's: a name in Greek or Cyrillic letters printed `"-"`, nothing for the customer to
    check the payee by. It is written as a passport's machine-readable zone writes it (ICAO Doc 9303), and the
    text stays GSM-7."""
    text = render(AddBeneficiary(Payee(name, PAYEE.iban)), FR)
    assert printed in text
    assert set(text) <= GSM7


def test_the_beneficiary_notice_says_who_when_and_holds_no_code() -> None:
    """The notice names the payee, the IBAN's ends, the date and time in UTC; no run of digits of a code."""
    at = datetime(2026, 11, 25, 12, 15, 42, tzinfo=UTC)
    text = beneficiary_added_notice("MaBanque", PAYEE, at, "fr")
    assert text.startswith('MaBanque: le bénéficiaire "Jean DUPONT" (IBAN FR76...0189) a été ajouté le 25/11')
    assert "à 12:15 UTC" in text
    assert set(text) <= GSM7
    assert not re.search(r"\d{6}", text)
    assert "was added on 25/11/2026 at 12:15 UTC" in beneficiary_added_notice("MaBanque", PAYEE, at, "en")


LONG_NAME = "Jean-Baptiste DUPONT DE LA FONTAINE"
NEW_PAYEE = NewPayee(datetime(2026, 12, 7, 9, 9, tzinfo=UTC), datetime(2026, 12, 7, 9, 30, tzinfo=UTC))


@pytest.mark.parametrize(
    ("digits", "amount_minor"), [(6, 100_000_000), (8, 1_000_000), (8, MAX_AMOUNT_MINOR)]
)
@pytest.mark.parametrize(
    ("answer", "said"), [("no_match", "nom ne correspond PAS"), ("close_match", "PROCHE")]
)
def test_a_long_name_never_takes_the_banks_payee_warning_out(
    digits: int, amount_minor: int, answer: str, said: str
) -> None:
    """An outside audit (AR1): a payee name of 15 letters or more took "nom ne correspond PAS" out of a large
    transfer's new-payee alert, and was printed whole in its room. The name gives way, down to "-"."""
    transfer = CreditTransfer(Money("EUR", amount_minor), Payee(LONG_NAME, PAYEE.iban), "t")
    ctx = SmsContext(
        "MaBanque", "9" * digits, 10, "fr", new_payee=NEW_PAYEE, flagged=True, payee_verification=answer
    )
    done = rendered(transfer, ctx)
    assert said in done.text
    assert measure(done.text).parts <= default_templates().max_parts
    assert len(done.fields["payee"]) < len(f'"{LONG_NAME}"')


def test_a_match_gives_way_to_the_name_cut_to_its_shortest_and_no_further() -> None:
    """`nom vérifié` warns of nothing: the name keeps at least SHORTEST_NAME letters before it gives way, and
    is then fitted again without it."""
    transfer = CreditTransfer(Money("EUR", MAX_AMOUNT_MINOR), Payee(LONG_NAME, PAYEE.iban), "t")
    ctx = SmsContext(
        "MaBanque", "9" * 8, 10, "fr", new_payee=NEW_PAYEE, flagged=True, payee_verification="match"
    )
    done = rendered(transfer, ctx)
    assert len(done.fields["payee"]) >= len('"...""') + SHORTEST_NAME
    assert measure(done.text).parts <= default_templates().max_parts


def test_an_answer_that_cannot_fit_gives_way_without_the_name_growing() -> None:
    """Templates that cannot hold the answer even with the name as "-" (the boot refuses them): the answer
    gives way, and the name stays "-", never printed longer in its room."""
    tight = replace(default_templates(), max_parts=1)
    ctx = SmsContext("MaBanque", "123456", 10, "fr", tight, payee_verification="no_match")
    transfer = CreditTransfer(Money("EUR", 100), Payee(LONG_NAME, PAYEE.iban), "t")
    done = rendered(transfer, ctx)
    assert "correspond" not in done.text
    assert done.fields["payee"] == '"-"'
