"""The policy schema: what a policy file may say, as typed pydantic models.

Every field has a type, a description and at least one example; unknown keys are
refused at every level; values are taken as written (strict mode: ``"7"`` is not a
number, ``7`` is not a duration). Rules that relate several fields (enough stores for
``min_copies``, two regions, Object Lock against retention) live in
``policies.rules``, and run only once a file has passed this schema (among them: a
drill schedule that fires often enough to drill every store within ``drill.period``).

``Policy.model_validate(data)`` raises ``pydantic.ValidationError``; the loader
(``policies.loader``) turns its errors into ``file:line: field: message`` problems.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    field_validator,
    model_validator,
)

from policies.types import (
    MAX_DURATION,
    AbsolutePath,
    Argv,
    Cron,
    Duration,
    FileName,
    NonBlank,
    PositiveDuration,
    Size,
    Slug,
)

MAX_COUNT = 100_000
"""The most a retention rule may keep: far beyond any real use, small enough to compute with."""
MAX_OBJECT_LOCK_DAYS = MAX_DURATION.days
"""The longest Object Lock: 100 years (36500 days)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class PathSource(_Model):
    """Files and directories on the system, backed up with ``restic backup PATH``."""

    path: AbsolutePath = Field(
        description="A file or directory to back up, as an absolute path on the system.",
        examples=["/srv/share"],
    )
    exclude: list[NonBlank] = Field(
        default_factory=list,
        description="restic exclude patterns (as for `restic backup --exclude`) left out of "
        "this path.",
        examples=[["*.tmp", "cache/"]],
    )


class CommandSource(_Model):
    """A command whose standard output is the backup (a database dump, say)."""

    command: Argv = Field(
        description="The command, as a list of arguments (program first, never run through "
        "a shell); its standard output is stored as one file. A non-zero exit fails the run.",
        examples=[["sqlite3", "/srv/app/app.db", ".dump"]],
    )
    filename: FileName = Field(
        description="The name the command's output has in the snapshot "
        "(`restic backup --stdin-filename`).",
        examples=["app.sql"],
    )


PATH_SOURCE_TAG = "path source"
COMMAND_SOURCE_TAG = "command source"
UNION_TAGS = frozenset({PATH_SOURCE_TAG, COMMAND_SOURCE_TAG})
"""Names pydantic puts into error locations inside a source; never policy field names."""


def _source_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        if "path" in value:
            return PATH_SOURCE_TAG
        return COMMAND_SOURCE_TAG if "command" in value else None
    if isinstance(value, PathSource):
        return PATH_SOURCE_TAG
    return COMMAND_SOURCE_TAG if isinstance(value, CommandSource) else None


def _one_kind_of_source(value: Any) -> Any:
    if isinstance(value, dict):
        if "path" in value and "command" in value:
            raise ValueError("a source has either `path` or `command`, not both")
        if "path" not in value and "command" not in value:
            raise ValueError(
                "a source needs either `path` (files) or `command` (a command's output)"
            )
    elif not isinstance(value, PathSource | CommandSource):
        raise ValueError("must be a mapping with either `path` or `command`")
    return value


Source = Annotated[
    Annotated[PathSource, Tag(PATH_SOURCE_TAG)] | Annotated[CommandSource, Tag(COMMAND_SOURCE_TAG)],
    Discriminator(_source_tag),
    BeforeValidator(_one_kind_of_source),
]
"""One source: a :class:`PathSource` or a :class:`CommandSource`, told apart by its keys."""


def _count(unit: str, example: int) -> Any:
    flag = "daily" if unit == "day" else f"{unit}ly"
    return Field(
        0,
        ge=0,
        le=MAX_COUNT,
        description=f"Keep the newest snapshot of each of the last N {unit}s that have one, "
        f"as `restic forget --keep-{flag}` does. 0 turns the rule off.",
        examples=[example],
    )


class Retention(_Model):
    """Which snapshots to keep; the rest are forgotten (restic ``forget --keep-*`` rules).

    A snapshot is kept when any rule keeps it. With no rule at all every snapshot is
    kept: ``retention: {}`` means keep forever.
    """

    keep_last: int = Field(
        0,
        ge=0,
        le=MAX_COUNT,
        description="Keep the N newest snapshots, as `restic forget --keep-last`. "
        "0 turns the rule off.",
        examples=[7],
    )
    keep_hourly: int = _count("hour", 24)
    keep_daily: int = _count("day", 14)
    keep_weekly: int = _count("week", 8)
    keep_monthly: int = _count("month", 12)
    keep_yearly: int = _count("year", 3)
    keep_within: Duration | None = Field(
        None,
        description="Keep every snapshot made within this duration of the newest snapshot, "
        "as `restic forget --keep-within`.",
        examples=["2d"],
    )

    def is_empty(self) -> bool:
        """True when no rule is set, which means that every snapshot is kept."""
        counts = (self.keep_last, self.keep_hourly, self.keep_daily, self.keep_weekly,
                  self.keep_monthly, self.keep_yearly)
        return not any(counts) and not self.keep_within


class Manifest(_Model):
    """The manifest of content digests an agent records with each backup."""

    sample_percent: float = Field(
        100,
        ge=0,
        le=100,
        description="Share of the backed-up files, in percent, whose SHA-256 the agent "
        "records, for drills to compare restored content against.",
        examples=[100],
    )


class Verification(_Model):
    """How often the daemon re-reads every stored copy."""

    period: PositiveDuration = Field(
        timedelta(days=30),
        description="Every byte of every copy is re-read and checked within this period.",
        examples=["30d"],
    )
    schedule: Cron = Field(
        "0 2 * * *",
        description="When the daemon re-reads a share of each store's objects (keyless: "
        "each object's SHA-256 against its name); each run reads the store's byte budget, "
        "by default enough to re-read everything within `period`. Five-field cron, UTC.",
        examples=["0 2 * * *"],
    )
    check_schedule: Cron = Field(
        "0 4 * * 0",
        description="When the daemon runs `restic check` against each store alone, with "
        "the escrowed password. Five-field cron, UTC.",
        examples=["0 4 * * 0"],
    )


class Replication(_Model):
    """How often the daemon makes sure every store holds every object (anti-entropy).

    Replication also starts right after each snapshot an agent reports.
    """

    schedule: Cron = Field(
        "20 * * * *",
        description="When the daemon compares every store of the system and copies what "
        "one lacks from one that has it. Five-field cron, UTC.",
        examples=["20 * * * *"],
    )


class Prune(_Model):
    """When retention runs, and how long removed objects wait before leaving the other stores."""

    schedule: Cron = Field(
        "0 1 * * *",
        description="When the daemon applies `retention`: `restic forget` and `prune` on "
        "one store, then the same objects are removed from the others. Five-field cron, UTC.",
        examples=["0 1 * * *"],
    )
    delete_delay: Duration = Field(
        timedelta(days=1),
        description="How long objects that prune removed from one store stay in the other "
        "stores before they are removed there too (a safety margin to stop a mistake).",
        examples=["1d"],
    )


class DrillCheck(_Model):
    """An application check run against a restored tree during a drill."""

    name: Slug = Field(
        description="The check's name in drill reports; unique within the policy.",
        examples=["app-db"],
    )
    command: Argv = Field(
        description="The command, as a list of arguments (never run through a shell); "
        "`{restored}` is replaced with the directory the snapshot was restored into.",
        examples=[["sqlite3", "{restored}/srv/app/app.db", "PRAGMA integrity_check"]],
    )
    expect_stdout: str | None = Field(
        None,
        description="When set, the command's standard output, without surrounding "
        "whitespace, must equal this.",
        examples=["ok"],
    )
    expect_exit: int = Field(
        0,
        ge=0,
        le=255,
        description="The exit status the command must end with.",
        examples=[0],
    )
    timeout: PositiveDuration = Field(
        timedelta(minutes=5),
        description="The check fails when the command runs longer than this.",
        examples=["5m"],
    )


class DrillRestore(_Model):
    """What a drill restores of the restore point: everything, a share of the files, or paths.

    With neither a percentage below 100 nor paths, every file is restored.
    """

    percent: float = Field(
        100,
        gt=0,
        le=100,
        description="Share of the files, in percent, that a drill restores, chosen "
        "deterministically by the SHA-256 of each file's path (the rule the agent's "
        "manifest sample uses, `policies.sampling.in_sample`), so that every drill of a "
        "snapshot restores the same files. 100 restores every file.",
        examples=[100],
    )
    paths: list[AbsolutePath] = Field(
        default_factory=list,
        description="Absolute paths, as backed up: only these and what lies beneath them "
        "are restored. Empty restores everything (or the `percent` share); cannot be "
        "combined with a `percent` below 100.",
        examples=[["/srv/share/finance"]],
    )

    @model_validator(mode="after")
    def _paths_or_percent(self) -> DrillRestore:
        if self.paths and self.percent < 100:
            raise ValueError("restore either `paths` or a `percent` below 100 of the files, "
                             "not both")
        return self


class DrillSandbox(_Model):
    """Where a drill restores to, and how much room it may take there."""

    path: AbsolutePath | None = Field(
        None,
        description="The directory drills restore into (each drill in a fresh 0700 "
        "directory beneath it, removed afterwards); empty means `<drd home>/drills`.",
        examples=["/var/lib/drd/drills"],
    )
    max_size: Size | None = Field(
        None,
        description="The most a drill may restore, as a size such as 500M, 10G or 1T "
        "(powers of 1024); a drill whose restore needs more fails without restoring. "
        "Empty means no limit.",
        examples=["10G"],
    )


class Drill(_Model):
    """When and how restore drills prove that the backups can be restored.

    Each run of the schedule drills one store of the system, rotating through the stores
    so that every store is drilled within ``period``; the policy is refused when the
    schedule fires too rarely for that. ``Policy.drill_targets()`` gives the RTO and RPO
    a drill is judged against.
    """

    schedule: Cron = Field(
        description="When drills run: five-field cron, UTC (0 and 7 are Sunday). Each run "
        "drills one store; the schedule must fire at least once per store within `period`.",
        examples=["0 3 * * 0"],
    )
    period: PositiveDuration = Field(
        timedelta(days=30),
        description="Every store of the system is drilled within this period.",
        examples=["30d"],
    )
    snapshot: Literal["latest", "oldest"] = Field(
        "latest",
        description="Which restore point a drill restores: `latest`, the newest good one, "
        "or `oldest`, the oldest one the retention still keeps.",
        examples=["latest"],
    )
    restore: DrillRestore = Field(
        default_factory=DrillRestore,
        description="What a drill restores: every file, a deterministic share of them, or "
        "listed paths.",
        examples=[{"percent": 100, "paths": ["/srv/share/finance"]}],
    )
    sandbox: DrillSandbox = Field(
        default_factory=DrillSandbox,
        description="Where a drill restores to and how much room it may take.",
        examples=[{"path": "/var/lib/drd/drills", "max_size": "10G"}],
    )
    sample_percent: float = Field(
        100,
        gt=0,
        le=100,
        description="Share of the files, in percent, whose restored content is compared "
        "against the agent's manifest: chosen by the SHA-256 of their path, like "
        "`restore.percent`, so with both below 100 the compared files are those in both "
        "samples. Above 0: a drill that compares nothing proves nothing.",
        examples=[100],
    )
    checks: list[DrillCheck] = Field(
        default_factory=list,
        description="Application checks run against the restored tree, in order.",
        examples=[[{"name": "app-db",
                    "command": ["sqlite3", "{restored}/srv/app/app.db", "PRAGMA integrity_check"],
                    "expect_stdout": "ok",
                    "expect_exit": 0,
                    "timeout": "5m"}]],
    )
    rto: PositiveDuration | None = Field(
        None,
        description="The recovery time objective a drill is judged against: it fails when "
        "its restore takes longer. Empty means the policy's `rto`.",
        examples=["4h"],
    )
    rpo: PositiveDuration | None = Field(
        None,
        description="The recovery point objective a drill is judged against: it fails when "
        "the restored snapshot is older than this at the drill. Empty means the "
        "policy's `rpo`.",
        examples=["1h"],
    )

    @field_validator("checks")
    @classmethod
    def _unique_check_names(cls, checks: list[DrillCheck]) -> list[DrillCheck]:
        _refuse_repeats([check.name for check in checks], "check name")
        return checks


def _refuse_repeats(values: list[str], what: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"{what} {value!r} appears more than once")
        seen.add(value)


class Policy(_Model):
    """A policy: what a system backs up, when, where to, for how long, and how it is proven.

    A policy loaded from a file (``policies.loader``) also carries the file's path and
    text, for the catalog to store what was applied.
    """

    policy: Slug = Field(
        description="The policy's unique name; systems are enrolled under it.",
        examples=["fileserver"],
    )
    description: str = Field(
        "",
        description="What the policy is for, for people reading lists and reports.",
        examples=["Department file servers"],
    )
    schedule: Cron = Field(
        description="When agents back up: five-field cron, UTC (0 and 7 are Sunday).",
        examples=["0 * * * *"],
    )
    sources: list[Source] = Field(
        min_length=1,
        description="What to back up: paths (`path`, `exclude`) and commands whose standard "
        "output is the backup (`command`, `filename`).",
        examples=[[{"path": "/srv/share", "exclude": ["*.tmp", "cache/"]},
                   {"command": ["sqlite3", "/srv/app/app.db", ".dump"],
                    "filename": "app.sql"}]],
    )
    before: list[Argv] = Field(
        default_factory=list,
        description="Commands run before the backup, in order; a failure fails the run.",
        examples=[[["/usr/local/bin/app-freeze"]]],
    )
    after: list[Argv] = Field(
        default_factory=list,
        description="Commands run after the backup, in order, also when the backup failed.",
        examples=[[["/usr/local/bin/app-thaw"]]],
    )
    stores: list[Slug] = Field(
        min_length=1,
        description="Names of the stores that each hold a copy of the repository.",
        examples=[["dc-a", "dc-b", "region-b"]],
    )
    min_copies: int = Field(
        ge=1,
        description="A backup is durable once this many stores hold all of it.",
        examples=[2],
    )
    single_region_ok: bool = Field(
        False,
        description="Allow stores that are all in one region (otherwise at least two regions "
        "are required).",
        examples=[False],
    )
    allow_shared_credentials: bool = Field(
        False,
        description="Allow stores where every agent gets the store's own keys (file stores, "
        "S3 stores added with --credentials shared): any one compromised system could then "
        "read, overwrite and delete every repository in them. Otherwise each system gets "
        "keys of its own, scoped to its repository.",
        examples=[False],
    )
    retention: Retention = Field(
        description="Which snapshots to keep (restic `forget --keep-*` rules); `{}` keeps all.",
        examples=[{"keep_last": 7, "keep_hourly": 24, "keep_daily": 14, "keep_weekly": 8,
                   "keep_monthly": 12, "keep_yearly": 3}],
    )
    object_lock_days: int = Field(
        0,
        ge=0,
        le=MAX_OBJECT_LOCK_DAYS,
        description="Days each new object is locked (S3 Object Lock) where a store supports "
        "it; 0 for none. Must not exceed the longest time the retention keeps a snapshot.",
        examples=[7],
    )
    rpo: PositiveDuration = Field(
        description="Recovery point objective: a system is late when its newest good "
        "snapshot is older than this.",
        examples=["1h"],
    )
    rto: PositiveDuration = Field(
        description="Recovery time objective: a drill fails when its restore takes longer.",
        examples=["4h"],
    )
    manifest: Manifest = Field(
        default_factory=Manifest,
        description="The manifest of content digests recorded with each backup.",
        examples=[{"sample_percent": 100}],
    )
    verification: Verification = Field(
        default_factory=Verification,
        description="How often every copy is re-read and checked.",
        examples=[{"period": "30d", "schedule": "0 2 * * *", "check_schedule": "0 4 * * 0"}],
    )
    replication: Replication = Field(
        default_factory=Replication,
        description="The periodic pass that makes every store hold every object.",
        examples=[{"schedule": "20 * * * *"}],
    )
    prune: Prune = Field(
        default_factory=Prune,
        description="When retention is applied, and the delay before removed objects "
        "leave the other stores.",
        examples=[{"schedule": "0 1 * * *", "delete_delay": "1d"}],
    )
    drill: Drill | None = Field(
        None,
        description="The restore drill plan; without it no drills are scheduled.",
        examples=[{"schedule": "0 3 * * 0", "period": "30d", "snapshot": "latest",
                   "restore": {"percent": 100, "paths": []},
                   "sandbox": {"path": "/var/lib/drd/drills", "max_size": "10G"},
                   "sample_percent": 100,
                   "rto": "4h", "rpo": "1h",
                   "checks": [{"name": "app-db",
                               "command": ["sqlite3", "{restored}/srv/app/app.db",
                                           "PRAGMA integrity_check"],
                               "expect_stdout": "ok", "expect_exit": 0,
                               "timeout": "5m"}]}],
    )

    _source_path: str | None = PrivateAttr(None)
    _source_text: str | None = PrivateAttr(None)

    @field_validator("stores")
    @classmethod
    def _unique_stores(cls, stores: list[str]) -> list[str]:
        _refuse_repeats(stores, "store")
        return stores

    @field_validator("sources")
    @classmethod
    def _unique_filenames(cls, sources: list[PathSource | CommandSource]) -> list:
        _refuse_repeats(
            [source.filename for source in sources if isinstance(source, CommandSource)],
            "command source filename",
        )
        return sources

    @property
    def name(self) -> str:
        """The policy's name (the ``policy`` field)."""
        return self.policy

    @property
    def source_path(self) -> str | None:
        """The file the policy was loaded from, or None if it was built in code."""
        return self._source_path

    @property
    def source_text(self) -> str | None:
        """The text of that file, exactly as read, or None if it was built in code."""
        return self._source_text

    @property
    def source_sha256(self) -> str | None:
        """The hex SHA-256 of :attr:`source_text` (UTF-8), or None without one."""
        if self._source_text is None:
            return None
        return hashlib.sha256(self._source_text.encode()).hexdigest()

    def drill_targets(self) -> tuple[timedelta, timedelta]:
        """The ``(rto, rpo)`` a drill of this policy is judged against.

        The drill plan's own ``rto`` / ``rpo`` where set, else the policy's top-level
        ``rto`` / ``rpo`` (also when the policy has no drill plan).
        """
        rto = self.drill.rto if self.drill and self.drill.rto is not None else self.rto
        rpo = self.drill.rpo if self.drill and self.drill.rpo is not None else self.rpo
        return rto, rpo

    def attach_source(self, path: str, text: str) -> None:
        """Record the file and text this policy was loaded from (the loader calls this)."""
        self._source_path = path
        self._source_text = text


def policy_json_schema() -> dict[str, Any]:
    """The JSON Schema of a policy file (for editors and documentation)."""
    return Policy.model_json_schema()
