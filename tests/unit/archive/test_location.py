"""Where the archive lives: a directory or an object-store URI, chosen in one place, secrets kept out of text."""

from __future__ import annotations

from pathlib import Path

import pytest

from archive.location import ArchiveLocation, ArchiveLocationError, from_settings, parse
from archive.queries import Archive
from cli.main import main
from common.settings import Settings

SECRET = "wJalrXUtnFEMI-K7MDENG"


def test_a_directory_stays_a_directory() -> None:
    loc = parse("var/archive")
    assert loc.is_local and loc.path == Path("var/archive") and loc.table("instructions") == "var/archive/instructions"
    assert parse(Path("/data/archive")).table("scans") == "/data/archive/scans"
    assert parse("file:///data/archive/").uri == "/data/archive"
    assert loc.options() is None


@pytest.mark.parametrize(("text", "uri"), [
    ("s3://customs-archive/prod/", "s3://customs-archive/prod"),
    ("S3://customs-archive", "s3://customs-archive"),
    ("gs://customs-archive/prod", "gs://customs-archive/prod"),
    ("az://container/prod", "az://container/prod"),
    ("abfss://container@account.dfs.core.windows.net/prod", "abfss://container@account.dfs.core.windows.net/prod"),
])
def test_an_object_store_uri_is_kept_as_a_uri(text: str, uri: str) -> None:
    loc = parse(text)
    assert not loc.is_local and loc.uri == uri and loc.table("instructions") == f"{uri}/instructions"
    with pytest.raises(ArchiveLocationError):
        loc.path  # noqa: B018 - the property raises


@pytest.mark.parametrize(("text", "says"), [
    ("http://minio:9000/bucket", "scheme http:// is not supported"),
    ("s3://", "names no bucket"),
    ("", "empty"),
])
def test_what_is_not_a_location_is_refused(text: str, says: str) -> None:
    with pytest.raises(ArchiveLocationError, match=says):
        parse(text)


def test_credentials_in_the_uri_are_refused_without_being_repeated() -> None:
    with pytest.raises(ArchiveLocationError) as refused:
        parse(f"s3://AKIA1:{SECRET}@bucket/prefix")
    assert SECRET not in str(refused.value) and "AWS_ACCESS_KEY_ID" in str(refused.value)


def test_settings_choose_the_location_and_hand_over_the_storage_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ARCHIVE_STORAGE_OPTIONS", f'{{"AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_SECRET_ACCESS_KEY": "{SECRET}"}}')
    settings = Settings(archive_dir=tmp_path / "archive")
    assert from_settings(settings).uri == str(tmp_path / "archive")  # ARCHIVE_DIR, as before
    monkeypatch.setenv("ARCHIVE_LOCATION", "s3://customs-archive/prod")
    settings = Settings(archive_dir=tmp_path / "archive")
    loc = from_settings(settings)
    assert loc.uri == "s3://customs-archive/prod"
    assert loc.options() == {"AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_SECRET_ACCESS_KEY": SECRET}
    # --archive-dir wins over both settings, and keeps the settings' storage options.
    assert from_settings(settings, "s3://other/x").options() == loc.options()
    assert from_settings(settings, str(tmp_path / "elsewhere")).uri == str(tmp_path / "elsewhere")
    # Neither the settings nor the location ever show the secret.
    for text in (repr(settings), str(settings), repr(loc), str(loc), f"{loc}", repr(Archive(loc).location)):
        assert SECRET not in text


def test_a_location_with_options_passed_as_such_keeps_them() -> None:
    loc = ArchiveLocation("s3://b/p", {"AWS_REGION": "eu-west-1"})
    assert from_settings(Settings(), loc).options() == {"AWS_REGION": "eu-west-1"}


@pytest.mark.parametrize("command", [["report", "--from", "2026-01-01", "--to", "2026-01-02"], ["archive-maintain"],
                                     ["archive", "--no-create-topics", "--metrics-port", "0"]])
def test_the_commands_refuse_a_bad_location_in_one_line(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command, "--archive-dir", f"s3://AKIA1:{SECRET}@bucket/p"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"riskctl {command[0]}: error: the s3:// archive location has credentials in it") and err.count("\n") == 1
    assert SECRET not in err


def test_explain_hands_an_object_store_uri_over_intact(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[object] = []

    def explain(settings: object, declaration_id: str, timeout_s: float, archive_dir: object = None, **kw: object) -> object:
        seen.append(archive_dir)
        return {"declaration_id": declaration_id, "instructions": [], "outcome": None}, []

    monkeypatch.setattr("cli.policy.explain", explain)
    main(["explain", "D1", "--archive-dir", "s3://customs-archive/prod", "--archive-only", "--json"])
    assert seen == ["s3://customs-archive/prod"]  # not a Path, which would fold "//" into "s3:/customs-archive"


def test_an_archive_that_cannot_be_opened_stops_the_sink_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    not_a_directory = tmp_path / "archive"
    not_a_directory.write_text("a file where the archive directory should be")
    assert main(["archive", "--no-create-topics", "--metrics-port", "0", "--archive-dir", str(not_a_directory)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"riskctl archive: error: cannot open the archive {not_a_directory}: ") and err.count("\n") == 1
