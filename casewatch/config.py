"""Settings read from the environment, and the data directory they point at.

Everything an operator can set lives here, under the names fixed by the CLI
contract, so that Django settings, the CLI and the workers agree on one reading.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

from cryptography.fernet import Fernet

USCIS_SANDBOX_BASE_URL = "https://api-int.uscis.gov"
USCIS_SANDBOX_TOKEN_URL = "https://api-int.uscis.gov/oauth/accesstoken"  # noqa: S105
# Where `casewatch up` mounts its built-in sandbox and channel fakes beside the web app.
BUILTIN_SANDBOX_PREFIX = "/sandbox/uscis"
BUILTIN_WHATSAPP_PREFIX = "/sandbox/whatsapp"
BUILTIN_TWILIO_PREFIX = "/sandbox/twilio"
WHATSAPP_BASE_URL = "https://graph.facebook.com"
WHATSAPP_API_VERSION = "v21.0"
TWILIO_BASE_URL = "https://api.twilio.com"


class ConfigError(Exception):
    """A setting is missing or malformed; the message names it."""


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


def _env_float(name: str, default: float) -> float:
    raw = _env(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc
    if value <= 0:
        raise ConfigError(f"{name} must be greater than 0, got {raw!r}")
    return value


@dataclass(frozen=True)
class UscisSettings:
    """How to reach USCIS: the official API, an external sandbox, or the built-in one."""

    client_id: str | None
    client_secret: str | None
    base_url: str | None
    token_url: str | None
    rate_per_second: float
    timeout_seconds: float

    @property
    def uses_builtin_sandbox(self) -> bool:
        """No credentials and no URL: casewatch starts its own sandbox."""
        return self.client_id is None and self.base_url is None


def uscis_settings() -> UscisSettings:
    client_id = _env("CASEWATCH_USCIS_CLIENT_ID")
    client_secret = _env("CASEWATCH_USCIS_CLIENT_SECRET")
    if (client_id is None) != (client_secret is None):
        raise ConfigError(
            "set both CASEWATCH_USCIS_CLIENT_ID and CASEWATCH_USCIS_CLIENT_SECRET, or neither"
        )
    base_url = _env("CASEWATCH_USCIS_BASE_URL")
    token_url = _env("CASEWATCH_USCIS_TOKEN_URL")
    if client_id is not None and base_url is None:
        base_url = USCIS_SANDBOX_BASE_URL
    if base_url is not None and token_url is None:
        token_url = (
            USCIS_SANDBOX_TOKEN_URL
            if base_url == USCIS_SANDBOX_BASE_URL
            else base_url.rstrip("/") + "/oauth/accesstoken"
        )
    for name, url in (
        ("CASEWATCH_USCIS_BASE_URL", base_url),
        ("CASEWATCH_USCIS_TOKEN_URL", token_url),
    ):
        if url is not None and not url.startswith(("http://", "https://")):
            raise ConfigError(f"{name} must be an http:// or https:// URL, got {url!r}")
    return UscisSettings(
        client_id=client_id,
        client_secret=client_secret,
        base_url=base_url,
        token_url=token_url,
        rate_per_second=_env_float("CASEWATCH_USCIS_RATE", 10.0),
        timeout_seconds=_env_float("CASEWATCH_USCIS_TIMEOUT", 15.0),
    )


def data_dir() -> Path:
    return Path(os.environ.get("CASEWATCH_DATA_DIR") or "./var").expanduser().resolve()


def _write_private(path: Path, content: str) -> None:
    """Create a file readable only by its owner, without a window where it is not."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(content)


def ensure_data_dir() -> Path:
    """Create the data directory and its secrets on first use; later calls only read."""
    root = data_dir()
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        keys = root / "keys"
        keys.mkdir(mode=0o700, exist_ok=True)
        makers: dict[str, Callable[[], str]] = {
            "secret_key": lambda: secrets.token_urlsafe(50),
            "fernet.keys": lambda: Fernet.generate_key().decode() + "\n",
            "audit.key": lambda: secrets.token_hex(32),
            "name_index.key": lambda: secrets.token_hex(32),
            "channel_fakes.json": _fake_channel_secrets,
        }
        for name, make in makers.items():
            path = keys / name
            if not path.exists():
                # Another process may create it first; theirs is as good.
                with contextlib.suppress(FileExistsError):
                    _write_private(path, make())
    except OSError as exc:
        raise ConfigError(f"cannot use data directory {root}: {exc.strerror}") from exc
    return root


def _fake_channel_secrets() -> str:
    """Secrets the built-in WhatsApp and Twilio fakes sign with, and casewatch verifies."""
    return json.dumps(
        {
            "whatsapp_app_secret": secrets.token_hex(32),
            "whatsapp_verify_token": secrets.token_urlsafe(24),
            "whatsapp_token": secrets.token_urlsafe(32),
            "whatsapp_phone_number_id": str(100000000000000 + secrets.randbelow(10**14)),
            "twilio_account_sid": "AC" + secrets.token_hex(16),
            "twilio_auth_token": secrets.token_hex(16),
            "twilio_from": "+15550100000",
        }
    )


def secret_key() -> str:
    return (ensure_data_dir() / "keys" / "secret_key").read_text(encoding="utf-8").strip()


def fernet_keys() -> list[str]:
    """Newest key first: MultiFernet encrypts with the first and decrypts with any."""
    text = (ensure_data_dir() / "keys" / "fernet.keys").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip()]


def fernet_keys_path() -> Path:
    return ensure_data_dir() / "keys" / "fernet.keys"


def write_fernet_keys(keys: list[str]) -> None:
    """Replace keys/fernet.keys (newest first) whole, mode 0600, never half-written.

    The new file is written beside the old one, flushed to disk and renamed over it,
    so a process reading the keys sees either the old list or the new one.
    """
    if not keys:
        raise ConfigError("keys/fernet.keys must keep at least one key")
    for key in keys:
        Fernet(key.encode("ascii"))  # Refuses a malformed key before anything is written.
    path = fernet_keys_path()
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("".join(f"{key}\n" for key in keys))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # The rename itself survives a power cut.
    finally:
        os.close(directory)


def audit_key() -> bytes:
    """The HMAC key of the audit chain: without it no one can forge a valid entry."""
    text = (ensure_data_dir() / "keys" / "audit.key").read_text(encoding="utf-8").strip()
    return text.encode("ascii")


def name_index_key() -> bytes:
    """The HMAC key of the blind index of client names: without it a token names no one."""
    text = (ensure_data_dir() / "keys" / "name_index.key").read_text(encoding="utf-8").strip()
    return text.encode("ascii")


@dataclass(frozen=True)
class MonitorSettings:
    """How much of USCIS the monitor may use, and how often any one case may be asked about."""

    daily_budget: int
    rate_per_second: float
    min_interval_seconds: float
    # How long a worker's claim on a batch of cases lasts; a killed worker's claims
    # come back after it. Keep it well above CASEWATCH_USCIS_TIMEOUT.
    claim_lease_seconds: float = 600.0


def monitor_settings() -> MonitorSettings:
    raw_budget = _env("CASEWATCH_USCIS_DAILY_BUDGET") or "10000"
    try:
        budget = int(raw_budget)
    except ValueError as exc:
        raise ConfigError(
            f"CASEWATCH_USCIS_DAILY_BUDGET must be a whole number, got {raw_budget!r}"
        ) from exc
    if budget < 1:
        raise ConfigError(f"CASEWATCH_USCIS_DAILY_BUDGET must be at least 1, got {raw_budget!r}")
    return MonitorSettings(
        daily_budget=budget,
        rate_per_second=_env_float("CASEWATCH_USCIS_RATE", 10.0),
        min_interval_seconds=_env_float("CASEWATCH_CHECK_INTERVAL_SECONDS", 600.0),
        claim_lease_seconds=claim_lease_seconds(),
    )


def claim_lease_seconds() -> float:
    """CASEWATCH_CLAIM_LEASE_SECONDS: how long a worker's claim on a case lasts (default 600)."""
    return _env_float("CASEWATCH_CLAIM_LEASE_SECONDS", 600.0)


@dataclass(frozen=True)
class MailSettings:
    """Where outgoing e-mail (invitations, password resets) goes.

    Without CASEWATCH_SMTP_URL nothing leaves the machine: each message is written as a
    file under `mail/` in the data directory, so an operator can still read a link.
    """

    backend: str
    host: str = ""
    port: int = 0
    username: str = ""
    password: str = ""
    starttls: bool = False
    ssl: bool = False
    capture_dir: Path | None = None
    from_address: str = "casewatch@localhost"


_SMTP_DEFAULT_PORTS = {"smtp": 25, "smtps": 465}
_TRUE = ("1", "true", "yes", "on")


def mail_settings() -> MailSettings:
    """CASEWATCH_SMTP_URL (`smtp://user:pass@host:587?starttls=1`, or `smtps://` for TLS)."""
    from urllib.parse import parse_qs, unquote, urlsplit

    sender = _env("CASEWATCH_MAIL_FROM") or "casewatch@localhost"
    url = _env("CASEWATCH_SMTP_URL")
    if url is None:
        return MailSettings(
            backend="casewatch.notify.mail_capture.EncryptedFileBackend",
            capture_dir=data_dir() / "mail",
            from_address=sender,
        )
    parts = urlsplit(url)
    if parts.scheme not in _SMTP_DEFAULT_PORTS or not parts.hostname:
        raise ConfigError("CASEWATCH_SMTP_URL must look like smtp://user:pass@host:587?starttls=1")
    try:
        port = parts.port or _SMTP_DEFAULT_PORTS[parts.scheme]
    except ValueError as exc:
        raise ConfigError("CASEWATCH_SMTP_URL has a port that is not a number") from exc
    query = {key: values[-1].lower() for key, values in parse_qs(parts.query).items()}
    ssl = parts.scheme == "smtps" or query.get("ssl", "") in _TRUE
    starttls = query.get("starttls", "") in _TRUE
    if ssl and starttls:
        raise ConfigError("CASEWATCH_SMTP_URL: choose starttls=1 or smtps://, not both")
    return MailSettings(
        backend="django.core.mail.backends.smtp.EmailBackend",
        host=parts.hostname,
        port=port,
        username=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        starttls=starttls,
        ssl=ssl,
        from_address=sender,
    )


def session_idle_seconds() -> int:
    """CASEWATCH_SESSION_IDLE_MINUTES: a staff session ends after this long unused (720)."""
    return round(_env_float("CASEWATCH_SESSION_IDLE_MINUTES", 720.0) * 60)


def login_failure_limit() -> int:
    """CASEWATCH_LOGIN_FAILURES: wrong passwords in a row before a login is locked out (5)."""
    raw = _env("CASEWATCH_LOGIN_FAILURES") or "5"
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"CASEWATCH_LOGIN_FAILURES must be a whole number, got {raw!r}")
    return int(raw)


def login_lockout() -> timedelta:
    """CASEWATCH_LOGIN_LOCKOUT_MINUTES: how long a locked-out login waits (15)."""
    return timedelta(minutes=_env_float("CASEWATCH_LOGIN_LOCKOUT_MINUTES", 15.0))


# A year; without includeSubDomains, so other sites of the firm's domain are not bound by it.
HSTS_SECONDS = 365 * 24 * 3600


def transport_security(public: str | None) -> dict[str, object]:
    """Django settings for staff reaching casewatch over https (CASEWATCH_PUBLIC_URL).

    Cookies are sent over https only, browsers are told to keep using https (HSTS), the
    TLS proxy's X-Forwarded-Proto is believed, and forms posted from the public address
    pass Django's origin check. Without an https address nothing is set, so that
    `casewatch up` on http://127.0.0.1 keeps its cookies.
    """
    if not public or not public.startswith("https://"):
        return {}
    parts = urlsplit(public)
    return {
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "LANGUAGE_COOKIE_SECURE": True,
        "SECURE_HSTS_SECONDS": HSTS_SECONDS,
        "SECURE_PROXY_SSL_HEADER": ("HTTP_X_FORWARDED_PROTO", "https"),
        "CSRF_TRUSTED_ORIGINS": [f"{parts.scheme}://{parts.netloc}"],
    }


def invitation_days() -> int:
    """CASEWATCH_INVITATION_DAYS: for how many days an invitation link can be used (7)."""
    raw = _env("CASEWATCH_INVITATION_DAYS") or "7"
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"CASEWATCH_INVITATION_DAYS must be a whole number of days, got {raw!r}")
    return int(raw)


def access_log_days() -> int:
    """CASEWATCH_ACCESS_LOG_DAYS: how many days views of client data are kept (2190: six years)."""
    raw = _env("CASEWATCH_ACCESS_LOG_DAYS") or "2190"
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"CASEWATCH_ACCESS_LOG_DAYS must be a whole number of days, got {raw!r}")
    return int(raw)


def portal_link_days() -> int:
    """CASEWATCH_PORTAL_LINK_DAYS: for how many days a client's portal link works (90)."""
    raw = _env("CASEWATCH_PORTAL_LINK_DAYS") or "90"
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"CASEWATCH_PORTAL_LINK_DAYS must be a whole number of days, got {raw!r}")
    return int(raw)


def public_url() -> str | None:
    """CASEWATCH_PUBLIC_URL: the address staff use, for links in e-mails.

    Unset, links use the address the request came in on; set it when casewatch is
    reachable under more than one name, so that no forged Host header reaches an e-mail.
    """
    url = _env("CASEWATCH_PUBLIC_URL")
    if url is not None and not url.startswith(("http://", "https://")):
        raise ConfigError(f"CASEWATCH_PUBLIC_URL must be an http:// or https:// URL, got {url!r}")
    return url.rstrip("/") if url else None


@dataclass(frozen=True)
class WhatsAppSettings:
    """The WhatsApp Cloud API, or the built-in fake when none of its settings is given.

    `base_url` is None for the built-in fake until `casewatch up` knows its own address
    (it then sets CASEWATCH_WHATSAPP_BASE_URL for the worker).
    """

    base_url: str | None
    api_version: str
    token: str
    phone_number_id: str
    app_secret: str
    verify_token: str
    builtin: bool


@dataclass(frozen=True)
class TwilioSettings:
    """Twilio's Messages API, or the built-in fake when none of its settings is given."""

    base_url: str | None
    account_sid: str
    auth_token: str
    sender: str
    builtin: bool


def _fake_secrets() -> dict[str, str]:
    path = ensure_data_dir() / "keys" / "channel_fakes.json"
    loaded: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
    return loaded


def _url_setting(name: str, default: str | None) -> str | None:
    url = _env(name) or default
    if url is not None and not url.startswith(("http://", "https://")):
        raise ConfigError(f"{name} must be an http:// or https:// URL, got {url!r}")
    return url.rstrip("/") if url else None


def _all_or_none(names: tuple[str, ...]) -> bool:
    """True when the provider is configured; a partial configuration is an error."""
    given = [name for name in names if _env(name) is not None]
    if given and len(given) != len(names):
        missing = ", ".join(name for name in names if name not in given)
        raise ConfigError(f"{missing} must be set too (or none of {', '.join(names)})")
    return bool(given)


def whatsapp_settings() -> WhatsAppSettings:
    names = (
        "CASEWATCH_WHATSAPP_APP_SECRET",
        "CASEWATCH_WHATSAPP_VERIFY_TOKEN",
        "CASEWATCH_WHATSAPP_TOKEN",
        "CASEWATCH_WHATSAPP_PHONE_NUMBER_ID",
    )
    version = _env("CASEWATCH_WHATSAPP_API_VERSION") or WHATSAPP_API_VERSION
    if _all_or_none(names):
        return WhatsAppSettings(
            base_url=_url_setting("CASEWATCH_WHATSAPP_BASE_URL", WHATSAPP_BASE_URL),
            api_version=version,
            token=os.environ["CASEWATCH_WHATSAPP_TOKEN"].strip(),
            phone_number_id=os.environ["CASEWATCH_WHATSAPP_PHONE_NUMBER_ID"].strip(),
            app_secret=os.environ["CASEWATCH_WHATSAPP_APP_SECRET"].strip(),
            verify_token=os.environ["CASEWATCH_WHATSAPP_VERIFY_TOKEN"].strip(),
            builtin=False,
        )
    fake = _fake_secrets()
    return WhatsAppSettings(
        base_url=_url_setting("CASEWATCH_WHATSAPP_BASE_URL", None),
        api_version=version,
        token=fake["whatsapp_token"],
        phone_number_id=fake["whatsapp_phone_number_id"],
        app_secret=fake["whatsapp_app_secret"],
        verify_token=fake["whatsapp_verify_token"],
        builtin=True,
    )


def twilio_settings() -> TwilioSettings:
    names = ("CASEWATCH_TWILIO_ACCOUNT_SID", "CASEWATCH_TWILIO_AUTH_TOKEN", "CASEWATCH_TWILIO_FROM")
    if _all_or_none(names):
        return TwilioSettings(
            base_url=_url_setting("CASEWATCH_TWILIO_BASE_URL", TWILIO_BASE_URL),
            account_sid=os.environ["CASEWATCH_TWILIO_ACCOUNT_SID"].strip(),
            auth_token=os.environ["CASEWATCH_TWILIO_AUTH_TOKEN"].strip(),
            sender=os.environ["CASEWATCH_TWILIO_FROM"].strip(),
            builtin=False,
        )
    fake = _fake_secrets()
    return TwilioSettings(
        base_url=_url_setting("CASEWATCH_TWILIO_BASE_URL", None),
        account_sid=fake["twilio_account_sid"],
        auth_token=fake["twilio_auth_token"],
        sender=fake["twilio_from"],
        builtin=True,
    )


def web_url() -> str | None:
    """CASEWATCH_WEB_URL: where this installation's web app answers (set by `casewatch up`).

    Provider callbacks need an absolute address; CASEWATCH_PUBLIC_URL wins when set.
    """
    return _url_setting("CASEWATCH_WEB_URL", None)


def callback_base_url() -> str | None:
    """The address providers call back on: the public URL, else the web app's own, else None."""
    return public_url() or web_url()


@dataclass(frozen=True)
class DispatchSettings:
    """How the notification dispatcher claims, retries and waits for late callbacks."""

    # A dispatcher's claim on a notification it is about to send; keep it well above
    # the channel timeout, so a slow provider call never outlives its claim.
    lease_seconds: float = 300.0
    # After a claim on a notification in `sending` ran out (its dispatcher died), how
    # long to wait for a late callback that shows the provider took it, before resending.
    grace_seconds: float = 120.0
    # Transient failures in a row before a notification is given up as failed.
    max_attempts: int = 8
    # Back-off after the n-th transient failure: base × 2^(n-1), at most cap (seconds).
    backoff_base_seconds: float = 30.0
    backoff_cap_seconds: float = 3600.0
    # Connect/read timeout of each provider call.
    timeout_seconds: float = 15.0


def dispatch_settings() -> DispatchSettings:
    """CASEWATCH_DISPATCH_* (lease, grace, attempts, back-off), CASEWATCH_CHANNEL_TIMEOUT."""
    raw_attempts = _env("CASEWATCH_DISPATCH_MAX_ATTEMPTS") or "8"
    if not raw_attempts.isdigit() or int(raw_attempts) < 1:
        raise ConfigError(
            "CASEWATCH_DISPATCH_MAX_ATTEMPTS must be a whole number, at least 1, "
            f"got {raw_attempts!r}"
        )
    return DispatchSettings(
        lease_seconds=_env_float("CASEWATCH_DISPATCH_LEASE_SECONDS", 300.0),
        grace_seconds=_env_float("CASEWATCH_DISPATCH_GRACE_SECONDS", 120.0),
        max_attempts=int(raw_attempts),
        backoff_base_seconds=_env_float("CASEWATCH_DISPATCH_BACKOFF_SECONDS", 30.0),
        backoff_cap_seconds=_env_float("CASEWATCH_DISPATCH_BACKOFF_CAP_SECONDS", 3600.0),
        timeout_seconds=_env_float("CASEWATCH_CHANNEL_TIMEOUT", 15.0),
    )


def upload_limit_bytes() -> int:
    """The largest spreadsheet the web import takes (CASEWATCH_MAX_UPLOAD_MB, default 20)."""
    return int(_env_float("CASEWATCH_MAX_UPLOAD_MB", 20.0) * 1024 * 1024)


def import_limit_bytes() -> int:
    """The largest file `casewatch import` reads (CASEWATCH_MAX_IMPORT_MB, default 200)."""
    return int(_env_float("CASEWATCH_MAX_IMPORT_MB", 200.0) * 1024 * 1024)
