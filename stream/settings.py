"""Settings in one object, built at the entry point and passed down.

Precedence: command-line flags, then environment (``PULSE_*``, ``REDIS_URL``), then a TOML file
(``--config``, ``PULSE_CONFIG`` or ``./pulse.toml``), then defaults.

>>> s = Settings.load(env={"PULSE_PREFIX": "demo:", "PULSE_SLA_SECONDS": "900"}, config_path=None)
>>> (s.prefix, s.sla_seconds)
('demo:', 900.0)
>>> Settings.load(env={"PULSE_SLA_SECONDS": "soon"}, config_path=None)
Traceback (most recent call last):
...
stream.settings.SettingsError: PULSE_SLA_SECONDS: expected a number, got 'soon'
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Settings", "SettingsError"]


class SettingsError(ValueError):
    """A setting that cannot be used; the message names it."""


@dataclass(frozen=True, slots=True)
class Settings:
    #: Redis URL; None means "start an embedded redis-server under data_dir".
    redis_url: str | None = None
    #: Prefix of every key the engine writes.
    prefix: str = "pulse:"
    #: Local state: embedded Redis file, model caches, screenshots.
    data_dir: str = ".pulse"
    #: A customer query not answered within this many seconds (event time) counts as unanswered.
    sla_seconds: float = 3600.0
    #: How many mentions wait for their replies at most (in Redis, so the wait outlives the process; the oldest
    #: by event time stop waiting first; stream/replies.py).
    pending_keep: int = 500_000
    #: How long (event seconds behind the newest day seen) record ids are remembered for de-duplication,
    #: across runs (stream/dedupe.py).
    dedupe_seconds: float = 2 * 86400.0
    #: Business hours per brand, "brand=TZ Mon-Fri 09:00-18:00; other=...": first response is also counted in
    #: business time for these brands (stream/insights.py). "" for none.
    business_hours: str = ""
    #: Behaviour after interaction compares a customer's sentiment this many days after a brand reply with
    #: as many days before.
    after_reply_days: float = 7.0
    #: An author's first mention of a brand is remembered this long (event seconds behind the brand's newest
    #: first mention); an author quiet for longer counts as new again (attraction rate).
    author_retention_seconds: float = 400 * 86400.0
    #: This run's identity: its window fields are ``name@run``, so runs over different inputs add up and a
    #: replay or resume of the same input rewrites its own. "" derives it from the source (stream/runs.py).
    run_id: str = ""
    #: Records older than the per-key watermark by more than this (seconds) count as `late`.
    allowed_lateness_seconds: float = 60.0
    #: Minute windows older than this (event seconds behind the newest) are final; later records go to the DLQ.
    window_horizon_seconds: float = 6 * 3600.0
    #: A brand x channel's event time jumping further ahead than this (seconds) waits for a second record to
    #: confirm it before windows become final (one mistyped year must not dead-letter the records after it).
    watermark_jump_seconds: float = 30 * 86400.0
    #: Retention (event seconds behind the series' newest mention) of minute windows in Redis; hour windows
    #: are kept 30x and day windows 365x longer (stream/retention.py). 0 keeps them forever.
    minute_retention_seconds: float = 7 * 86400.0
    #: Retention (event seconds behind the flow's newest mention) of the calls feed's per-minute volumes.
    calls_retention_seconds: float = 210 * 86400.0
    #: An alert's current state (``alerts:current``) is kept this long (event seconds) after its window.
    alert_retention_seconds: float = 90 * 86400.0
    #: A customer's sentiment timeline keeps this much event time behind their newest mention, and no mention
    #: more than twice this behind the flow's newest (a timeline goes whole once its newest mention is).
    timeline_retention_seconds: float = 60 * 86400.0
    #: How often (system seconds) aggregates are flushed to Redis.
    flush_seconds: float = 0.5
    #: Bytewax epoch (snapshot) interval in seconds when recovery is on.
    epoch_seconds: float = 2.0
    #: Response times and unanswered queries of mentions older than this (event seconds behind the newest of
    #: their brand x channel) are forgotten; 0 keeps them forever.
    response_retention_seconds: float = 90 * 86400.0
    #: How long (event seconds behind the flow's newest mention) a mention's model input is kept for feedback
    #: to refer to.
    features_retention_seconds: float = 2 * 86400.0
    #: Checkpoint the models to Redis after this many accepted feedback labels (and on a clean stop).
    checkpoint_every: int = 50
    #: Run the CRM service process (identity, cases, assignment, rules, SLAs) in the flow; off for
    #: listening-only deployments (analytics, models and alerts without cases).
    crm: bool = True
    #: Business rules (TOML) the CRM evaluates on every mention; "" for the shipped examples
    #: (crm/data/rules.toml), "none" for no rules.
    rules: str = ""
    #: CRM settings (TOML, e.g. crm/data/crm.toml): SLA minutes per channel and priority, assignment strategy
    #: per queue/channel, priority weights, KB top-k, ...; "" for the built-in defaults. Same file as
    #: ``pulse crm --crm-config``; the flow's ``prefix`` wins over the file's.
    crm_config: str = ""
    #: The demo's simulated staff (stream/demo_agents.py), e.g. "rate=800,labels=0.015,noise=0.03": agents in
    #: shifts work the cases assigned to them and analysts label a trickle of mentions from the simulator's
    #: ground truth. "" (the default) for none: real people act through the dashboard and the CLI.
    demo_staff: str = ""
    #: How many latest mentions the dashboard table keeps.
    latest_keep: int = 200
    #: Port of the dashboard.
    dashboard_port: int = 8501
    #: Port of the alert push WebSocket server.
    alerts_port: int = 8765
    #: Key that signs model checkpoints and prequential state in Redis (HMAC-SHA256); a blob whose
    #: signature does not match is refused. Empty: a random key kept in ``{data_dir}/model.key`` (one
    #: machine just works); a cluster sets the same ``PULSE_MODEL_KEY`` on every process.
    model_key: str = dataclasses.field(default="", repr=False)

    @classmethod
    def load(
        cls,
        overrides: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        config_path: str | Path | None | bool = True,
    ) -> Settings:
        """Build settings from flags (``overrides``, None values ignored), environment and TOML file.

        ``config_path=True`` looks for ``PULSE_CONFIG`` or ``./pulse.toml``; ``None`` reads no file.
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        fields = {f.name: f for f in dataclasses.fields(cls)}
        path: Path | None
        if config_path is True:
            found = env.get("PULSE_CONFIG") or ("pulse.toml" if Path("pulse.toml").is_file() else None)
            path = Path(found) if found else None
        elif config_path in (None, False):
            path = None
        else:
            path = Path(str(config_path))
        if path is not None:
            if not path.is_file():
                raise SettingsError(f"config file {path} does not exist")
            try:
                data = tomllib.loads(path.read_text())
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise SettingsError(f"config file {path}: {exc}") from None
            for key, value in data.items():
                name = key.replace("-", "_")
                if name not in fields:
                    raise SettingsError(f"config file {path}: unknown setting {key!r}")
                values[name] = cls._coerce(name, value, f"{path}:{key}")
        for name in fields:
            env_name = "REDIS_URL" if name == "redis_url" else f"PULSE_{name.upper()}"
            if env.get(env_name):
                values[name] = cls._coerce(name, env[env_name], env_name)
        for name, value in (overrides or {}).items():
            if value is not None:
                values[name] = cls._coerce(name, value, f"--{name.replace('_', '-')}")
        return cls(**values)

    @classmethod
    def _coerce(cls, name: str, value: Any, where: str) -> Any:
        default = next(f.default for f in dataclasses.fields(cls) if f.name == name)
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise SettingsError(f"{where}: expected true or false, got {value!r}")
            return bool(value)
        if isinstance(default, int) and not isinstance(default, bool):
            try:
                return int(value)
            except (TypeError, ValueError):
                raise SettingsError(f"{where}: expected a whole number, got {value!r}") from None
        if isinstance(default, float):
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise SettingsError(f"{where}: expected a number, got {value!r}") from None
            if number < 0:
                raise SettingsError(f"{where}: must not be negative, got {value!r}")
            return number
        return None if value is None else str(value)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)
