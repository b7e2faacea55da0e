"""Where the archive's tables live: a local directory or an object store, and how to reach it.

Every reader and writer of the archive (the sink, maintenance, the queries behind ``explain``,
``report`` and ``export-labels``) opens its tables through an :class:`ArchiveLocation`, so the
location and its storage options are decided in one place (:func:`from_settings`):

* the command line's ``--archive-dir`` (a directory or a URI), else the setting
  ``archive_location``, else the setting ``archive_dir`` (default ``var/archive``);
* ``s3://bucket/prefix`` (also ``s3a://``, ``gs://``, ``az://``, ``abfs://``, ``abfss://``) goes to
  delta-rs's object_store, which reads its credentials and endpoint from the standard environment
  variables (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``,
  ``AWS_ENDPOINT_URL``, ``AWS_ALLOW_HTTP``; ``GOOGLE_*``, ``AZURE_*``); the setting
  ``archive_storage_options`` adds or overrides options and the same ones go to polars.

The storage options carry secrets: they are never part of the location's text or repr, and a URI
with credentials in it (``s3://key:secret@bucket``) is refused rather than logged.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OBJECT_STORE_SCHEMES = ("s3", "s3a", "gs", "az", "abfs", "abfss")
_URI = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://(?P<rest>.*)$")


class ArchiveLocationError(ValueError):
    """The archive location is not a directory nor a supported object-store URI."""


@dataclass(frozen=True)
class ArchiveLocation:
    """A local directory (``uri`` is its path) or an object-store prefix (``uri`` is ``scheme://bucket/prefix``)."""

    uri: str
    storage_options: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_local(self) -> bool:
        return _URI.match(self.uri) is None

    @property
    def path(self) -> Path:
        """The directory of a local archive (an object store has none)."""
        if not self.is_local:
            raise ArchiveLocationError(f"{self.uri} is an object store, not a directory")
        return Path(self.uri)

    def table(self, name: str) -> str:
        """The URI (or path) of one table, what delta-rs and polars open."""
        return str(Path(self.uri) / name) if self.is_local else f"{self.uri}/{name}"

    def options(self) -> dict[str, str] | None:
        """Storage options for delta-rs and polars (None: theirs from the environment only)."""
        return dict(self.storage_options) or None

    def prepare(self) -> None:
        """Create a local directory; an object-store prefix needs nothing (its bucket must exist)."""
        if self.is_local:
            Path(self.uri).mkdir(parents=True, exist_ok=True)

    def __str__(self) -> str:
        return self.uri


def parse(value: str | Path, storage_options: Mapping[str, str] | None = None) -> ArchiveLocation:
    """A location from a directory or a URI; raises :class:`ArchiveLocationError` for anything else."""
    if isinstance(value, Path):
        return ArchiveLocation(str(value), dict(storage_options or {}))
    text = value.strip()
    if not text:
        raise ArchiveLocationError("the archive location is empty")
    m = _URI.match(text)
    if m is None:
        return ArchiveLocation(text, dict(storage_options or {}))
    scheme, rest = m["scheme"].lower(), m["rest"].strip("/")
    if scheme == "file":
        return ArchiveLocation("/" + rest, dict(storage_options or {}))
    if scheme not in OBJECT_STORE_SCHEMES:
        raise ArchiveLocationError(f"archive location scheme {scheme}:// is not supported "
                                   f"(a directory, or one of {', '.join(s + '://' for s in OBJECT_STORE_SCHEMES)})")
    bucket = rest.split("/", 1)[0]
    userinfo = bucket.rpartition("@")[0]
    if ":" in userinfo or (userinfo and scheme not in ("abfs", "abfss")):  # abfss://container@account is no secret
        # Never echo the value: it holds credentials.
        raise ArchiveLocationError(f"the {scheme}:// archive location has credentials in it: put them in the environment "
                                   "(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) or in ARCHIVE_STORAGE_OPTIONS")
    if not bucket:
        raise ArchiveLocationError(f"the archive location {scheme}://{rest} names no bucket")
    return ArchiveLocation(f"{scheme}://{rest}", dict(storage_options or {}))


LocationLike = ArchiveLocation | Path | str


def as_location(value: LocationLike) -> ArchiveLocation:
    return value if isinstance(value, ArchiveLocation) else parse(value)


def from_settings(settings: Any, override: LocationLike | None = None) -> ArchiveLocation:
    """The archive of a command: ``override`` (``--archive-dir``), else ``archive_location``, else
    ``archive_dir``; with the storage options of the settings (secrets unwrapped here only)."""
    options = {k: v.get_secret_value() for k, v in (settings.archive_storage_options or {}).items()}
    if isinstance(override, ArchiveLocation):
        return override if override.storage_options else ArchiveLocation(override.uri, options)
    chosen = override if override is not None else (settings.archive_location or settings.archive_dir)
    return parse(chosen, options)
