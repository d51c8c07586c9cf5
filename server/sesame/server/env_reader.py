"""Reads `SESAME_*` variables and collects every problem instead of failing on the first."""

from __future__ import annotations

import errno
import ipaddress
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

FILE_LIMIT: Final = 1 << 20  # bytes a setting's file may hold: a PEM chain, a policy, a secret are far less
# ASCII digits only: `int` also reads other scripts' digits, and `str.isdigit` accepts superscripts `int`
# refuses (a port of `²` raised a ValueError through the boot, decision 0084).
_INTEGER: Final = re.compile(r"[+-]?[0-9]{1,30}")
_PORT: Final = re.compile(r"[0-9]{1,5}")
# A host name in ASCII letters, digits, hyphens and underscores (Compose names; an internationalised one in
# its xn-- form): `urlsplit` reads `http://²` as the host `²`, which no resolver knows (decision 0084).
_LABEL: Final = r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?"
_HOST_NAME: Final = re.compile(rf"(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*\.?")


def read_setting_file(path: str) -> bytes:
    """The bytes of the regular file at `path` (symbolic links followed), at most FILE_LIMIT.

    OSError (with a `strerror`) otherwise: a FIFO, a device or a directory is refused without being read, so
    that a FIFO nobody writes cannot hold the boot for ever, nor /dev/zero fill the memory.
    """
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(descriptor, "rb", buffering=0) as file:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        content = file.read(FILE_LIMIT + 1)
    if len(content) > FILE_LIMIT:
        raise OSError(errno.EFBIG, f"more than {FILE_LIMIT} bytes")
    return content


class EnvReader:
    """Reads variables and collects problems instead of failing on the first; secrets are never echoed.

    It also notes each variable it was asked for, with its default (`asked`): `sesame serve --help` lists
    the settings from that record, so the list is the code's own and cannot drift from it.
    """

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env
        self.problems: list[str] = []
        self.asked: dict[str, str] = {}

    def optional(self, name: str, unset: str = "unset") -> str | None:
        """The value, or None when unset or blank; `unset` says what that means, for the settings list. A
        value that is not UTF-8 (Python holds its bytes as surrogates) is a problem, and None: it crashed
        the boot where it was first written out (`SESAME_BANK_NAME`, in every SMS; an outside audit)."""
        self.asked.setdefault(name, unset)
        value = self._env.get(name, "").strip()
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            self.problems.append(f"{name} is not UTF-8 text")
            return None
        return value or None

    def text(self, name: str, default: str, shown: str | None = None) -> str:
        """The value, else `default`; `shown` is the default as the settings list says it, when `default`
        is computed from another setting (a path under SESAME_VAR_DIR)."""
        self.asked.setdefault(name, shown or default)
        return self.optional(name) or default

    def directory(self, name: str, default: str, shown: str | None = None) -> str:
        """A directory's path: one that does not exist yet is made when first written; anything else that
        is there (a file, a FIFO) is a problem, not a boot whose every write then fails."""
        value = self.text(name, default, shown)
        there = Path(value)
        if (there.exists() or there.is_symlink()) and not there.is_dir():
            self.problems.append(f"{name} must be a directory, not {value!r} (something else is there)")
        return value

    def choice(
        self, name: str, default: str, allowed: tuple[str, ...], *, blank_is_default: bool = True
    ) -> str:
        """One of `allowed`, else `default` when unset (or blank, unless `blank_is_default` is False: a blank
        value is then a problem, as a value not allowed is)."""
        self.asked.setdefault(name, f"{default} (or {', '.join(a for a in allowed if a != default)})")
        if not blank_is_default and name in self._env and not self._env[name].strip():
            self.problems.append(f"{name} is set but blank: say one of {', '.join(allowed)}")
            return default
        value = self.text(name, default)
        if value not in allowed:
            self.problems.append(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        self.asked.setdefault(name, f"{default} ({low} to {high})")
        raw = self.optional(name)
        if raw is None:
            return default
        if not _INTEGER.fullmatch(raw):
            self.problems.append(f"{name} must be an integer in ASCII digits, not {raw[:40]!r}")
            return default
        value = int(raw)
        if not low <= value <= high:
            self.problems.append(f"{name} must be between {low} and {high}, not {raw[:40]}")
            # The default stands in until the problems are told: a value past the range (99999999999999999999
            # seconds) overflowed a timedelta made from it first, a traceback (an outside audit's).
            return default
        return value

    def address(self, name: str, default: str) -> str:
        value = self.text(name, default)
        host, _, port = value.rpartition(":")
        if not _is_listen_host(host) or not _PORT.fullmatch(port) or not 0 <= int(port) <= 65535:
            self.problems.append(f"{name} must be host:port (an IPv6 address in brackets), not {value!r}")
        return value

    def optional_address(self, name: str, default: str) -> str | None:
        """A `host:port`, or None when the variable says `off`."""
        if self.text(name, default) == "off":
            return None
        return self.address(name, default)

    def secret(self, name: str) -> str:
        """Exactly one of `name` and `name_FILE` (a file whose content, stripped, is the secret)."""
        self.asked.setdefault(name, f"unset (or {name}_FILE)")
        value, path = self.optional(name), self.optional(f"{name}_FILE")
        if value is None and path is None and name in self._env:
            # Set, but blank: `give exactly one of` read as if the operator had not set it at all.
            self.problems.append(f"{name} holds no secret (empty or white space): give it, or {name}_FILE")
        elif (value is None) == (path is None):
            self.problems.append(f"give exactly one of {name} and {name}_FILE")
        if path is None:
            return value or ""
        try:
            secret = read_setting_file(path).decode("utf-8").strip()
        except OSError as exc:
            self.problems.append(f"{name}_FILE cannot be read ({exc.strerror})")
            return ""
        except UnicodeDecodeError:
            self.problems.append(f"{name}_FILE is not UTF-8 text")
            return ""
        if not secret:
            # As an empty variable reads as unset: a blank file is no secret. The delivery reports' listener
            # took `token=` as the empty token's match (decision 0080); a PIN or password, as given.
            self.problems.append(f"{name}_FILE holds no secret (the file is empty or white space)")
        return secret

    def url(self, name: str, unset: str = "unset") -> str | None:
        """An http(s) base URL with a host and no user, query, fragment or `%` escape; None when unset."""
        value = self.optional(name, unset)
        if value is not None and not _plain_url(value):
            self.problems.append(f"{name} must be an http(s) URL with a host and no user or query")
        return None if value is None else value.rstrip("/")

    def matching(self, name: str, value: str, pattern: re.Pattern[str], what: str) -> str:
        """`value` (read from `name`) when it fully matches `pattern`; else a problem saying `what`."""
        if not pattern.fullmatch(value):
            self.problems.append(f"{name} must be {what}")
        return value


def _plain_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return False
    return (
        parts.scheme in {"http", "https"}
        and _is_host(parts.hostname or "")
        and port != 0
        # Credentials in a URL end up in logs: the password has its own setting.
        and parts.username is None
        and not (parts.query or parts.fragment or "%" in value)
    )


def _is_host(host: str) -> bool:
    """A host name (ASCII, `_HOST_NAME`) or an IP address."""
    return bool(_HOST_NAME.fullmatch(host)) or _ip_version(host) is not None


def _is_listen_host(host: str) -> bool:
    """The host of a `host:port`: a host name, an IPv4 address, or an IPv6 address in brackets (bare, its
    colons would be read as the port's)."""
    if host.startswith("[") and host.endswith("]"):
        return _ip_version(host[1:-1]) == 6
    return bool(_HOST_NAME.fullmatch(host)) or _ip_version(host) == 4


def _ip_version(host: str) -> int | None:
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return None
