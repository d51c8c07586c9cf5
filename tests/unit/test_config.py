"""Settings from the environment, validated at boot."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from sesame.server.config import Settings
from sesame.server.domain.errors import ConfigurationError
from sesame.server.domain.noops import NoopLimits


def test_defaults_run_out_of_the_box() -> None:
    """With no variables: loopback address, embedded Redis and token, 6 digits, 5 minutes, 3 attempts."""
    settings = Settings.from_env({})
    assert settings.grpc_addr == "127.0.0.1:50051"
    assert settings.redis_url is None
    assert settings.hsm is None
    assert settings.policy.digits == 6
    assert settings.policy.lifetime == timedelta(minutes=5)
    assert settings.policy.max_attempts == 3
    assert (settings.policy.max_resends, settings.policy.resend_spacing) == (3, timedelta(seconds=30))
    assert settings.sms_console_file == Path("var/sms.jsonl")


def test_health_interval_is_one_second_by_default() -> None:
    """Dependencies are probed every second unless SESAME_HEALTH_INTERVAL_SECONDS says otherwise."""
    assert Settings.from_env({}).health_interval == 1.0
    assert Settings.from_env({"SESAME_HEALTH_INTERVAL_SECONDS": "5"}).health_interval == 5.0


@pytest.mark.parametrize("value", ["0", "61", "0.5"])
def test_health_interval_outside_one_to_sixty_seconds_is_refused(value: str) -> None:
    """A health interval that is not a whole number of seconds from 1 to 60 stops the service at boot."""
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({"SESAME_HEALTH_INTERVAL_SECONDS": value})
    assert "SESAME_HEALTH_INTERVAL_SECONDS" in str(caught.value)


def test_the_newest_keys_are_read_again_every_minute_unless_told() -> None:
    """SESAME_HSM_KEY_REREAD_SECONDS: how soon a rotation on the token is taken up; 1 to 3600 s."""
    assert Settings.from_env({}).hsm_key_reread == 60.0
    assert Settings.from_env({"SESAME_HSM_KEY_REREAD_SECONDS": "5"}).hsm_key_reread == 5.0
    for value in ("0", "3601", "1.5"):
        with pytest.raises(ConfigurationError, match="SESAME_HSM_KEY_REREAD_SECONDS"):
            Settings.from_env({"SESAME_HSM_KEY_REREAD_SECONDS": value})


def test_every_problem_is_reported_at_once() -> None:
    """Three bad values give one error naming the three variables."""
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({"SESAME_CODE_DIGITS": "5", "SESAME_MAX_ATTEMPTS": "x", "SESAME_ENV": "prod"})
    message = str(caught.value)
    assert "SESAME_CODE_DIGITS" in message
    assert "SESAME_MAX_ATTEMPTS" in message
    assert "SESAME_ENV" in message


def test_lifetime_cannot_exceed_ten_minutes() -> None:
    """NIST 800-63B and ASVS 2.7.2 cap an SMS code at 10 minutes."""
    with pytest.raises(ConfigurationError):
        Settings.from_env({"SESAME_CODE_TTL_SECONDS": "601"})


def test_production_needs_real_backends() -> None:
    """Production refuses the embedded Redis and the development token."""
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({"SESAME_ENV": "production"})
    assert "SESAME_REDIS_URL" in str(caught.value)
    assert "SESAME_PKCS11_MODULE" in str(caught.value)


def test_pin_file_is_read_and_pin_stays_out_of_repr(tmp_path: Path) -> None:
    """The PIN comes from its file and never shows in a repr."""
    module = tmp_path / "lib.so"
    module.write_bytes(b"")
    pin_file = tmp_path / "pin"
    pin_file.write_text("s3cret-pin\n")
    settings = Settings.from_env(
        {"SESAME_PKCS11_MODULE": str(module), "SESAME_HSM_TOKEN": "t", "SESAME_HSM_PIN_FILE": str(pin_file)}
    )
    assert settings.hsm is not None
    assert settings.hsm.pin == "s3cret-pin"
    assert "s3cret-pin" not in repr(settings)


# Every secret setting: the HSM PIN, Kannel's password, the delivery reports' token, the SMPP password, the
# SIM-swap token.
SECRETS = (
    "SESAME_HSM_PIN",
    "SESAME_KANNEL_PASSWORD",
    "SESAME_DLR_TOKEN",
    "SESAME_SMPP_PASSWORD",
    "SESAME_SIM_SWAP_TOKEN",
)


def _every_secret(tmp_path: Path, secrets: dict[str, str]) -> dict[str, str]:
    """Settings under which every secret is read (both SMS providers, the SIM-swap check), with `secrets`."""
    module = tmp_path / "lib.so"
    module.write_bytes(b"")
    return {
        "SESAME_PKCS11_MODULE": str(module),
        "SESAME_HSM_TOKEN": "t",
        "SESAME_SMS_PROVIDERS": "kannel,smpp",
        "SESAME_KANNEL_URL": "http://127.0.0.1:13013",
        "SESAME_KANNEL_USERNAME": "sesame",
        "SESAME_DLR_ADDR": "127.0.0.1:0",
        "SESAME_SMPP_HOST": "127.0.0.1",
        "SESAME_SMPP_SYSTEM_ID": "sesame",
        "SESAME_SIM_SWAP_URL": "https://sim-swap.example/check",
        **secrets,
    }


@pytest.mark.parametrize("content", ["", "\n", "  \t\n"])
def test_a_blank_secret_file_is_refused_for_every_secret(tmp_path: Path, content: str) -> None:
    """Every secret given as a file (the HSM PIN, Kannel's password, the delivery reports' token, the SMPP
    password, the SIM-swap token) refuses a blank file by name, as an empty variable reads as unset: the
    delivery reports' listener took `token=` as the empty token's match (decision 0080)."""
    blank = tmp_path / "blank"
    blank.write_text(content)
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env(_every_secret(tmp_path, {f"{name}_FILE": str(blank) for name in SECRETS}))
    for name in SECRETS:
        assert f"{name}_FILE holds no secret" in str(caught.value), name


@pytest.mark.parametrize("value", ["", " ", "\t\n"])
def test_a_blank_secret_variable_is_refused_for_every_secret(tmp_path: Path, value: str) -> None:
    """A secret variable set but blank (`SESAME_HSM_PIN=`, a template left unfilled) said `give exactly one of
    SESAME_HSM_PIN and SESAME_HSM_PIN_FILE`, as if it had not been set: it says the value is blank."""
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env(_every_secret(tmp_path, dict.fromkeys(SECRETS, value)))
    for name in SECRETS:
        assert f"{name} holds no secret (empty or white space): give it, or {name}_FILE" in str(caught.value)
        assert f"give exactly one of {name} and" not in str(caught.value)


def test_pin_and_pin_file_are_exclusive(tmp_path: Path) -> None:
    """Giving both is ambiguous and refused."""
    with pytest.raises(ConfigurationError):
        Settings.from_env(
            {
                "SESAME_PKCS11_MODULE": "/nonexistent",
                "SESAME_HSM_TOKEN": "t",
                "SESAME_HSM_PIN": "1",
                "SESAME_HSM_PIN_FILE": "f",
            }
        )


def test_bad_address_is_refused() -> None:
    """host:port is required."""
    with pytest.raises(ConfigurationError):
        Settings.from_env({"SESAME_GRPC_ADDR": "localhost"})


def test_resend_limits_are_read_and_bounded() -> None:
    """Resend count and spacing come from their variables; out-of-range values are refused by name."""
    settings = Settings.from_env({"SESAME_MAX_RESENDS": "0", "SESAME_RESEND_SPACING_SECONDS": "60"})
    assert (settings.policy.max_resends, settings.policy.resend_spacing) == (0, timedelta(seconds=60))
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({"SESAME_MAX_RESENDS": "6", "SESAME_RESEND_SPACING_SECONDS": "-1"})
    assert "SESAME_MAX_RESENDS" in str(caught.value)
    assert "SESAME_RESEND_SPACING_SECONDS" in str(caught.value)


def test_lockout_defaults_follow_the_rts() -> None:
    """Five wrong codes in a row, a first block of 15 minutes, doubling up to 24 hours."""
    lockout = Settings.from_env({}).policy.lockout
    assert (lockout.max_failures, lockout.first_block, lockout.longest_block) == (
        5,
        timedelta(minutes=15),
        timedelta(hours=24),
    )


def test_lockout_beyond_five_failures_or_with_a_shorter_cap_is_refused() -> None:
    """More than five failures (RTS Art. 4(3)(b)) and a cap under the first block are both named."""
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env(
            {
                "SESAME_LOCKOUT_FAILURES": "6",
                "SESAME_LOCKOUT_SECONDS": "3600",
                "SESAME_LOCKOUT_MAX_SECONDS": "600",
            }
        )
    assert "SESAME_LOCKOUT_FAILURES" in str(caught.value)
    assert "SESAME_LOCKOUT_MAX_SECONDS" in str(caught.value)


def test_the_phone_change_cooling_lasts_72_hours_by_default() -> None:
    """Payments wait three days after a number change; SESAME_PHONE_CHANGE_COOLING_SECONDS=0 turns it off."""
    assert Settings.from_env({}).lifecycle.cooling == timedelta(hours=72)
    env = {"SESAME_PHONE_CHANGE_COOLING_SECONDS": "0"}
    assert Settings.from_env(env).lifecycle.cooling == timedelta(0)


@pytest.mark.parametrize("value", ["-1", "2592001", "3 days"])
def test_a_cooling_period_outside_zero_to_thirty_days_is_refused(value: str) -> None:
    """A cooling period that is not a whole number of seconds up to 30 days stops the service at boot."""
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({"SESAME_PHONE_CHANGE_COOLING_SECONDS": value})
    assert "SESAME_PHONE_CHANGE_COOLING_SECONDS" in str(caught.value)


def test_send_budgets_default_to_ten_per_user_and_per_number_an_hour() -> None:
    """With no variables each user and each number may be sent 10 codes per rolling hour."""
    budget = Settings.from_env({}).policy.send_budget
    assert (budget.per_user, budget.per_phone, budget.window) == (10, 10, timedelta(hours=1))


def test_send_budget_settings_are_read() -> None:
    """SESAME_SEND_BUDGET_USER, _PHONE and _WINDOW_SECONDS set the budgets."""
    env = {
        "SESAME_SEND_BUDGET_USER": "5",
        "SESAME_SEND_BUDGET_PHONE": "7",
        "SESAME_SEND_BUDGET_WINDOW_SECONDS": "600",
    }
    budget = Settings.from_env(env).policy.send_budget
    assert (budget.per_user, budget.per_phone, budget.window) == (5, 7, timedelta(minutes=10))


def test_send_ceilings_default_to_fifty_per_caller_and_a_hundred_overall_a_second() -> None:
    """With no variables a caller may be sent 3000 codes and the deployment 6000 per rolling minute."""
    budget = Settings.from_env({}).policy.send_budget
    assert (budget.per_caller, budget.overall, budget.ceiling_window) == (3000, 6000, timedelta(minutes=1))


def test_send_ceiling_settings_are_read() -> None:
    """SESAME_SEND_CEILING_CALLER, _GLOBAL and _WINDOW_SECONDS set the ceilings."""
    env = {
        "SESAME_SEND_CEILING_CALLER": "20",
        "SESAME_SEND_CEILING_GLOBAL": "30",
        "SESAME_SEND_CEILING_WINDOW_SECONDS": "10",
    }
    budget = Settings.from_env(env).policy.send_budget
    assert (budget.per_caller, budget.overall, budget.ceiling_window) == (20, 30, timedelta(seconds=10))


def test_a_zero_send_budget_is_refused() -> None:
    """A budget of 0 would send nothing at all: boot refuses it."""
    with pytest.raises(ConfigurationError, match="SESAME_SEND_BUDGET_USER"):
        Settings.from_env({"SESAME_SEND_BUDGET_USER": "0"})


def test_countries_default_to_the_eea_and_french_overseas() -> None:
    """France, Germany and Réunion are served by default; the United States are not."""
    countries = Settings.from_env({}).policy.countries
    assert {"FR", "DE", "RE"} <= countries
    assert "US" not in countries


def test_countries_are_read_for_challenges_and_enrolment_alike() -> None:
    """SESAME_SMS_COUNTRIES sets the allow-list of both flows, upper-cased."""
    settings = Settings.from_env({"SESAME_SMS_COUNTRIES": "fr, be"})
    assert settings.policy.countries == settings.lifecycle.countries == frozenset({"FR", "BE"})


def test_an_unknown_country_code_is_refused() -> None:
    """A code libphonenumber does not know (a typo) stops the boot, named."""
    with pytest.raises(ConfigurationError, match="unknown: XX"):
        Settings.from_env({"SESAME_SMS_COUNTRIES": "FR,XX"})


def test_the_shard_count_and_the_noop_limits_are_read() -> None:
    """Decision 0058: the places Redis keys are spread over and the back-office no-ops' bounds."""
    default = Settings.from_env({})
    assert (default.redis_shards, default.noops) == (16, NoopLimits(20, 64, timedelta(hours=24)))
    settings = Settings.from_env(
        {
            "SESAME_REDIS_SHARDS": "4",
            "SESAME_NOOPS_JOURNALED_PER_HOUR": "5",
            "SESAME_NOOP_IDS_KEPT": "10",
            "SESAME_NOOP_IDS_KEPT_SECONDS": "600",
        }
    )
    assert (settings.redis_shards, settings.noops) == (4, NoopLimits(5, 10, timedelta(minutes=10)))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SESAME_REDIS_SHARDS", "0"),
        ("SESAME_REDIS_SHARDS", "4097"),  # a journal feed's ids carry the shard modulo 4096
        ("SESAME_REDIS_SHARDS", "sixteen"),
        ("SESAME_NOOPS_JOURNALED_PER_HOUR", "0"),
        ("SESAME_NOOP_IDS_KEPT", "0"),
        ("SESAME_NOOP_IDS_KEPT_SECONDS", "59"),
    ],
)
def test_a_bad_shard_count_or_noop_limit_is_refused_at_start(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env({name: value})


@pytest.mark.parametrize("name", ["Ma\nBanque", "Ma\tBanque", "Ma\u200bBanque", "Ma\x1b[31mBanque"])
def test_a_bank_name_that_is_not_printable_on_one_line_is_refused(name: str) -> None:
    """Found by an outside audit: a line break in SESAME_BANK_NAME was printed in every SMS."""
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({"SESAME_BANK_NAME": name})
    assert "SESAME_BANK_NAME must be printable text on one line" in str(caught.value)
