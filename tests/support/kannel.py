"""A private Kannel for the tests: bearerbox, the fake SMSC of kannel-extras, smsbox.

Everything listens on 127.0.0.1 on free ports, lives in its own directory, and starts and stops within a
bounded time. The fake SMSC prints every message it gets; `messages()` reads them back, decoded.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote_to_bytes

from tests.support.ports import free_port

BEARERBOX = Path("/usr/sbin/bearerbox")
SMSBOX = Path("/usr/sbin/smsbox")
FAKESMSC = Path("/usr/lib/kannel/test/fakesmsc")
START_LIMIT = 10.0  # seconds for each box to come up (measured: well under 1 s)
USERNAME = "sesame"
_CONNECTED = "Connected to bearerbox"  # smsbox's log line once its link to bearerbox is up

# `Got message 1: <MaBanque +33612345678 ucs-2 %00M%00a...>`: sender, receiver, then `text <the text>`,
# `ucs-2 <URL-encoded UTF-16BE>`, or for one part of a concatenated message `udh <UDH> data <bytes>`
# (URL-encoded; UTF-8 for a GSM text, UTF-16BE for UCS-2).
_GOT = re.compile(r"Got message \d+: <(\S+) (\S+) (.*)>$", re.MULTILINE)


@dataclass(frozen=True)
class FakeSms:
    """A message as the fake SMSC received it; a concatenated one once all its parts are in."""

    sender: str
    receiver: str
    coding: str  # `text` (GSM 7-bit) or `ucs-2`
    text: str
    parts: int = 1


@dataclass(frozen=True)
class Kannel:
    """A running Kannel: its sendsms URL and account, and what its fake SMSC received."""

    url: str
    username: str
    password: str
    admin_url: str
    admin_password: str
    fakesmsc_log: Path
    front: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False, compare=False)
    smsc: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False, compare=False)
    smsc_argv: list[str] = field(default_factory=list, repr=False, compare=False)

    def cut_smsc_link(self) -> None:
        """Stop the fake SMSC: bearerbox keeps trying to reach it, and smsbox answers each sendsms with
        `202 3: Queued for later delivery` (taken, held until an SMSC connects)."""
        for process in self.smsc:
            process.terminate()
            process.wait(timeout=5)

    def restore_smsc_link(self) -> None:
        """Start the fake SMSC again, its output added to the same log: bearerbox links to it within its
        reconnect delay and hands it the messages it queued, each with its delivery reports."""
        with self.fakesmsc_log.open("ab") as out:
            process = subprocess.Popen(
                self.smsc_argv, stdout=out, stderr=subprocess.STDOUT, cwd=self.fakesmsc_log.parent
            )
        self.smsc.append(process)

    def close_front_door(self) -> None:
        """Stop smsbox, Kannel's HTTP sendsms face: every new message is refused (connection refused) while
        bearerbox still hands what it accepted to its SMSC, as a provider that stops taking traffic does. A
        whole shutdown instead drops what bearerbox holds in its queue (no store file here): a message the
        provider accepted and then lost, which no sender can tell without a delivery report."""
        for process in self.front:
            process.terminate()
            process.wait(timeout=5)

    def messages(self) -> list[FakeSms]:
        """Every message the fake SMSC printed so far: single ones first, then concatenated ones."""
        singles: list[FakeSms] = []
        parts: dict[tuple[str, str, int, int], dict[int, bytes]] = {}
        for sender, receiver, rest in _GOT.findall(self.fakesmsc_log.read_text(encoding="utf-8")):
            kind, _, payload = rest.partition(" ")
            if kind == "udh":
                udh, _, data = payload.partition(" data ")
                ref, total, seq = _bytes(udh)[3:6]  # 05 00 03 <ref> <total> <seq>: 8-bit concatenation
                parts.setdefault((sender, receiver, ref, total), {})[seq] = _bytes(data)
            elif kind == "ucs-2":
                singles.append(FakeSms(sender, receiver, kind, _bytes(payload).decode("utf-16-be")))
            else:
                singles.append(FakeSms(sender, receiver, kind, payload))
        return singles + [
            _joined(sender, receiver, [got[seq] for seq in sorted(got)])
            for (sender, receiver, _, total), got in parts.items()
            if len(got) == total
        ]

    def wait_for_message(self, marker: str, limit: float = 5.0) -> FakeSms:
        """The first message whose text contains `marker`, waiting at most `limit` seconds."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            for message in self.messages():
                if marker in message.text:
                    return message
            time.sleep(0.05)
        raise AssertionError(f"the fake SMSC got no message with {marker!r}")


def kannel_settings(kannel: Kannel, **extra: str) -> dict[str, str]:
    """The settings of a `sesame serve` whose only provider is `kannel`, its delivery reports on a free
    loopback port under a token of its own, and `extra`."""
    return {
        "SESAME_SMS_PROVIDERS": "kannel",
        "SESAME_KANNEL_URL": kannel.url,
        "SESAME_KANNEL_USERNAME": kannel.username,
        "SESAME_KANNEL_PASSWORD": kannel.password,
        "SESAME_DLR_ADDR": "127.0.0.1:0",
        "SESAME_DLR_TOKEN": secrets.token_urlsafe(32),
        **extra,
    }


def _bytes(encoded: str) -> bytes:
    return unquote_to_bytes(encoded.replace("+", "%20"))


def _joined(sender: str, receiver: str, parts: list[bytes]) -> FakeSms:
    raw = b"".join(parts)
    # The part lines do not name the coding: French text in UCS-2 is full of NUL bytes, in UTF-8 never.
    if b"\0" in raw:
        return FakeSms(sender, receiver, "ucs-2", raw.decode("utf-16-be"), len(parts))
    return FakeSms(sender, receiver, "text", raw.decode("utf-8"), len(parts))


def _config(work: Path, ports: dict[str, int], password: str, admin_password: str) -> str:
    # No trailing comments: Kannel reads them as part of the value. No store: no persistence to clean.
    return f"""group = core
admin-port = {ports["admin"]}
admin-interface = 127.0.0.1
admin-password = {admin_password}
smsbox-port = {ports["smsbox"]}
smsbox-interface = 127.0.0.1
box-allow-ip = "127.0.0.1"
log-file = "{work / "bearerbox.log"}"
dlr-storage = internal

group = smsc
smsc = fake
smsc-id = FAKE
port = {ports["smsc"]}
our-host = 127.0.0.1
connect-allow-ip = "127.0.0.1"

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {ports["smsbox_dial"]}
sendsms-port = {ports["sendsms"]}
sendsms-interface = 127.0.0.1
log-file = "{work / "smsbox.log"}"

group = sendsms-user
username = {USERNAME}
password = {password}
user-allow-ip = "127.0.0.1"
max-messages = 8
concatenation = true
"""


# What smsbox dials to reach bearerbox's box port (the argument): that port itself, or a door to it.
BearerboxLink = Callable[[int], contextlib.AbstractContextManager[int]]


@contextlib.contextmanager
def running_kannel(work: Path, bearerbox_link: BearerboxLink = contextlib.nullcontext) -> Iterator[Kannel]:
    """Start bearerbox, the fake SMSC and smsbox in that order, yield once smsbox is linked to bearerbox,
    then shut them down."""
    box_port = free_port()
    with bearerbox_link(box_port) as dial, _running_kannel(work, box_port, dial) as kannel:
        yield kannel


@contextlib.contextmanager
def _running_kannel(work: Path, box_port: int, dial: int) -> Iterator[Kannel]:
    missing = [str(path) for path in (BEARERBOX, SMSBOX, FAKESMSC) if not path.exists()]
    if missing:
        raise RuntimeError(f"Kannel is not installed ({', '.join(missing)}): run `make sms-deps`")
    ports = {name: free_port() for name in ("admin", "smsc", "sendsms")}
    ports |= {"smsbox": box_port, "smsbox_dial": dial}
    password, admin_password = secrets.token_hex(8), secrets.token_hex(8)
    conf = work / "kannel.conf"
    conf.write_text(_config(work, ports, password, admin_password), encoding="utf-8")
    kannel = Kannel(
        url=f"http://127.0.0.1:{ports['sendsms']}",
        username=USERNAME,
        password=password,
        admin_url=f"http://127.0.0.1:{ports['admin']}",
        admin_password=admin_password,
        fakesmsc_log=work / "fakesmsc.log",
    )
    processes: list[subprocess.Popen[bytes]] = []
    try:
        processes.append(_spawn([str(BEARERBOX), "-v", "1", str(conf)], work / "bearerbox.out"))
        _wait(lambda: "running" in _status(kannel), processes, "bearerbox")
        fake = [str(FAKESMSC), "-H", "127.0.0.1", "-r", str(ports["smsc"]), "-m", "0", "1 2 text x"]
        processes.append(_spawn(fake, kannel.fakesmsc_log))
        kannel.smsc.append(processes[-1])
        kannel.smsc_argv.extend(fake)
        _wait(lambda: "online" in _status(kannel), processes, "the fake SMSC")
        processes.append(_spawn([str(SMSBOX), "-v", "1", str(conf)], work / "smsbox.out"))
        kannel.front.append(processes[-1])
        _wait(lambda: _smsbox_ready(work / "smsbox.out", ports["sendsms"]), processes, "smsbox")
        yield kannel
    finally:
        _stop(kannel, processes)


def _spawn(argv: list[str], output: Path) -> subprocess.Popen[bytes]:
    with output.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=output.parent)


def _status(kannel: Kannel) -> str:
    url = f"{kannel.admin_url}/status.txt?password={kannel.admin_password}"
    try:
        with urllib.request.urlopen(url, timeout=1) as reply:  # noqa: S310 (a loopback http URL we built)
            return str(reply.read().decode(errors="replace"))
    except (urllib.error.URLError, OSError):
        return ""


def _smsbox_ready(output: Path, sendsms_port: int) -> bool:
    """smsbox is linked to bearerbox and its sendsms port listens.

    Its port alone is not enough: smsbox opens it, and serves it, before it connects to bearerbox, and a
    sendsms in between makes it panic (`lock_out: Assertion 'conn != NULL' failed` in write_to_bearerbox)
    and exit: Kannel is gone for the whole test, every message fails over (measured with the connect to
    bearerbox delayed). It logs `Connected to bearerbox` once that link is set; its log is flushed by line.
    """
    return _CONNECTED in output.read_text(encoding="utf-8", errors="replace") and _listening(sendsms_port)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait(ready: Callable[[], bool], processes: list[subprocess.Popen[bytes]], what: str) -> None:
    deadline = time.monotonic() + START_LIMIT
    while time.monotonic() < deadline:
        if any(process.poll() is not None for process in processes):
            raise RuntimeError(f"a Kannel process exited while waiting for {what}")
        if ready():
            return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not come up within {START_LIMIT} s")


def _stop(kannel: Kannel, processes: list[subprocess.Popen[bytes]]) -> None:
    """Ask bearerbox to shut everything down; terminate, then kill, what is still there after 5 s."""
    if processes:
        with contextlib.suppress(urllib.error.URLError, OSError):
            urllib.request.urlopen(  # noqa: S310 (a loopback http URL we built)
                f"{kannel.admin_url}/shutdown?password={kannel.admin_password}", timeout=2
            ).close()
    deadline = time.monotonic() + 5
    # A fake SMSC started again (restore_smsc_link) is stopped with the others.
    for process in processes + [each for each in kannel.smsc if each not in processes]:
        try:
            process.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=2)
