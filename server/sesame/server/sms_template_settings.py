"""The SMS templates and their segment budget, read and checked at boot like every other setting.

`SESAME_SMS_MAX_PARTS` is the most parts any SMS may take; `SESAME_SMS_TEMPLATES_DIR` a directory of
templates to use instead of the package's (docs/sms.md). Every template is rendered with the longest values
this deployment can give it (its bank name, code digits and validity): one that is bad or too long stops
the boot, named with the reason.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from sesame.server.domain.challenges import ChallengePolicy
from sesame.server.domain.sms_budget import WorstCase, over_budget
from sesame.server.domain.sms_templates import DEFAULT_MAX_PARTS, SmsTemplates, default_templates, load_into
from sesame.server.env_reader import EnvReader


def read_sms_templates(reader: EnvReader, policy: ChallengePolicy) -> SmsTemplates:
    """The templates to send with, checked against the budget; the defaults when there are problems."""
    max_parts = reader.integer("SESAME_SMS_MAX_PARTS", DEFAULT_MAX_PARTS, 1, 10)
    folder = reader.optional("SESAME_SMS_TEMPLATES_DIR", "unset: the package's templates (docs/sms.md)")
    if folder is not None and not Path(folder).is_dir():
        reader.problems.append(f"SESAME_SMS_TEMPLATES_DIR {folder!r} is not a directory")
        return default_templates()
    directory = resources.files("sesame.server") / "sms_templates" if folder is None else Path(folder)
    templates = load_into(directory, max_parts, reader.problems)
    if templates is None:
        return default_templates()
    worst = WorstCase(policy.bank_name, policy.digits, max(1, round(policy.lifetime.total_seconds() / 60)))
    reader.problems.extend(
        f"SMS template {problem} (SESAME_SMS_MAX_PARTS, SESAME_BANK_NAME)"
        for problem in over_budget(templates, worst)
    )
    return templates
