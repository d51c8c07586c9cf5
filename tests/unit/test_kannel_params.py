"""The sendsms query: coding only when the text needs it, the dlr-url encoded whole, secrets out of reprs."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

from sesame.clients.kannel_dlr import report_token
from sesame.clients.sms_kannel import DlrCallback, KannelConfig, sendsms_params
from sesame.server.domain.model import SmsMessage

TOKEN = "T0k3n_" + "x" * 37
CALLBACK = DlrCallback("http://127.0.0.1:9465/", TOKEN)
CONFIG = KannelConfig("http://127.0.0.1:13013", "sesame", "pa55word", "MaBanque", dlr=CALLBACK)
GSM = SmsMessage("+33612345678", "MaBanque: code 482913. Réservé à vous.", "00ff.k1.d6")
UCS2 = SmsMessage("+33612345678", "MaBanque: code 482913 pour François.", "00ff.k1.d6")


def test_a_gsm_text_goes_with_the_default_coding():
    """No coding or charset for a GSM-7 text: Kannel's default (UTF-8 in, 7-bit out)."""
    params = sendsms_params(CONFIG, GSM, "ref1")
    assert "coding" not in params
    assert "charset" not in params
    assert (params["from"], params["to"], params["text"]) == ("MaBanque", "+33612345678", GSM.text)


def test_a_text_outside_gsm7_goes_as_ucs2_from_utf8():
    """coding=2 with charset=UTF-8, or Kannel would read the text as UTF-16BE."""
    params = sendsms_params(CONFIG, UCS2, "ref1")
    assert (params["coding"], params["charset"]) == ("2", "UTF-8")


def test_the_dlr_url_is_one_encoded_value_with_the_status_escape():
    """Encoded whole, the dlr-url stays one parameter; decoded, it names challenge, ref, token, %d and %F."""
    query = urlencode(sendsms_params(CONFIG, GSM, "ref1"))
    params = parse_qs(query)
    assert params["dlr-mask"] == ["31"]
    assert "status" not in params
    assert "challenge" not in params
    dlr = urlsplit(params["dlr-url"][0])
    assert (dlr.scheme, dlr.netloc, dlr.path) == ("http", "127.0.0.1:9465", "/dlr/kannel")
    token = report_token(TOKEN, "00ff.k1.d6", "ref1")  # the message's own, not the secret
    assert dlr.query == f"challenge=00ff.k1.d6&ref=ref1&token={token}&status=%d&message_id=%F"


def test_no_delivery_report_is_asked_without_a_callback():
    """Without a DLR listener there is neither dlr-mask nor dlr-url."""
    params = sendsms_params(KannelConfig("http://k", "u", "p", "MaBanque"), GSM, "ref1")
    assert "dlr-mask" not in params
    assert "dlr-url" not in params


def test_no_delivery_report_is_asked_for_a_notice():
    """A notice (no challenge) goes without dlr-mask or dlr-url, even with a DLR listener."""
    notice = SmsMessage("+33612345678", "MaBanque: votre numéro sécurisé a été changé.", "")
    params = sendsms_params(CONFIG, notice, "ref1")
    assert "dlr-mask" not in params
    assert "dlr-url" not in params


def test_password_and_token_stay_out_of_reprs():
    """The configuration can be logged: neither the password nor the token shows."""
    assert "pa55word" not in repr(CONFIG)
    assert TOKEN not in repr(CONFIG)


def test_a_code_asks_the_smsc_to_drop_it_past_its_life():
    """`validity` in whole minutes, rounded up, from the message's time left; none without one (0123)."""
    timed = dataclasses.replace(GSM, valid_for=timedelta(seconds=241))
    assert sendsms_params(CONFIG, timed, "ref1")["validity"] == "5"
    assert "validity" not in sendsms_params(CONFIG, GSM, "ref1")
