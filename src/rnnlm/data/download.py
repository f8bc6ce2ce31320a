"""Standard corpora by name (`data=wikitext2`, `ptb`, `ptb_char`, `wikitext103`, `tinyshakespeare`,
`enwik8`): downloaded once, checked, unpacked into `train.txt`/`valid.txt`/`test.txt`, then read offline;
the translation pairs `data=tatoeba_eng_fra` likewise into `train.tsv`/`valid.tsv`/`test.tsv`.

Layout under the cache folder (`paths.data_dir`, default `~/.cache/rnnlm`):

    downloads/<file>               the file as published (an archive or a text file), kept once verified
    datasets/<name>/train.txt ...  the three splits, and manifest.json (URL, SHA-256, how it was made)

Every write is atomic: a download goes to a temporary file that is renamed into place only after its
SHA-256 matched; a dataset folder is built in a temporary folder renamed into place when complete. A
failed or interrupted download leaves nothing behind. Archive members are read, never extracted to paths
they name, and an archive with a member that is absolute or climbs out of its folder (`..`), or a link,
is refused whole. With `sha256: null` (no published checksum known) the first download's SHA-256 is
recorded in the manifest and trusted from then on ("trust on first use"); the log says so.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

from rnnlm.data.pairs import write_tatoeba_splits
from rnnlm.data.sources import SPLITS, CorpusError

log = logging.getLogger(__name__)

CHUNK = 1 << 20


@dataclass(frozen=True)
class DatasetSpec:
    """How one standard corpus is laid out in its published file.

    Either `members` (split -> path of a file inside the archive), or `source` (one file: a member of
    the archive, or "" for the downloaded file itself) cut into splits at `cuts` (split -> (start, stop)
    in percent of its bytes; several splits may share a range), or `source` handed to `write`, which
    writes the split files (`train<suffix>`, ...) into a folder itself.
    """

    url: str
    sha256: str | None
    members: dict[str, str] = field(default_factory=dict)
    source: str | None = None
    cuts: dict[str, tuple[int, int]] = field(default_factory=dict)
    about: str = ""
    write: Callable[[IO[bytes], Path], None] | None = None
    suffix: str = ".txt"


# The published locations and, where one is published, the SHA-256 of the file at that location.
DATASETS: dict[str, DatasetSpec] = {
    "wikitext2": DatasetSpec(
        url="https://wikitext.smerity.com/wikitext-2-v1.zip",
        sha256="92675f1d63015c1c8b51f1656a52d5bdbc33aafa60cc47a218a66e7ee817488c",
        members={s: f"wikitext-2/wiki.{s}.tokens" for s in SPLITS},
        about="WikiText-2 (Merity et al. 2016), tokenised v1",
    ),
    "wikitext103": DatasetSpec(
        url="https://wikitext.smerity.com/wikitext-103-v1.zip",
        sha256="242ba0f20b329cfdf1ccc61e9e9e5b59becf189db7f7a81cd2a0e2fc31539590",
        members={s: f"wikitext-103/wiki.{s}.tokens" for s in SPLITS},
        about="WikiText-103 (Merity et al. 2016), tokenised v1",
    ),
    "ptb": DatasetSpec(
        url="http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz",
        sha256=None,
        members={s: f"simple-examples/data/ptb.{s}.txt" for s in SPLITS},
        about="Penn Treebank, Mikolov's preprocessed version (10k words)",
    ),
    "ptb_char": DatasetSpec(
        url="http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz",
        sha256=None,
        members={s: f"simple-examples/data/ptb.char.{s}.txt" for s in SPLITS},
        about="Penn Treebank characters, Mikolov's version (space-separated, '_' between words)",
    ),
    "tinyshakespeare": DatasetSpec(
        url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        source="",
        cuts={"train": (0, 90), "valid": (90, 100), "test": (90, 100)},
        about="tiny Shakespeare (char-rnn); nanoGPT's split: first 90% train, last 10% valid (= test)",
    ),
    "enwik8": DatasetSpec(
        url="http://mattmahoney.net/dc/enwik8.zip",
        sha256="547994d9980ebed1288380d652999f38a14fe291a6247c157c3d33d4932534bc",
        source="enwik8",
        cuts={"train": (0, 90), "valid": (90, 95), "test": (95, 100)},
        about="enwik8 (Hutter Prize), bytes 0-90M train, 90M-95M valid, 95M-100M test",
    ),
    "tatoeba_eng_fra": DatasetSpec(
        url="https://www.manythings.org/anki/fra-eng.zip",
        sha256=None,  # republished as Tatoeba grows: no fixed checksum
        source="fra.txt",
        write=write_tatoeba_splits,
        suffix=".tsv",
        about="Tatoeba English-French pairs (manythings.org, CC BY 2.0), split by MD5(English) % 40",
    ),
}


class DownloadError(CorpusError):
    """A download that failed, did not match its checksum, or an archive that is unsafe to read."""


def _file_name(url: str) -> str:
    name = PurePosixPath(urllib.parse.urlparse(url).path).name
    if not name:
        raise DownloadError(f"data.url={url} does not end in a file name")
    return name


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _expected_files(spec: DatasetSpec) -> str:
    if spec.members:
        return ", ".join(spec.members[s] for s in SPLITS)
    return spec.source or "the file itself"


def _fetch(url: str, dest: Path, sha256: str | None, target: Path, spec: DatasetSpec) -> str:
    """Download `url` to `dest` atomically; returns its SHA-256 (checked against `sha256` if given)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.part-", dir=dest.parent)
    tmp = Path(tmp_name)
    h = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (http/https/file URLs from the config)
                    for block in iter(lambda: response.read(CHUNK), b""):
                        h.update(block)
                        out.write(block)
            except (urllib.error.URLError, OSError, ValueError) as err:
                reason = getattr(err, "reason", None) or err
                raise DownloadError(
                    f"could not download {url} ({reason}). Without network: fetch that file elsewhere "
                    f"and put it at {dest} (it is checked and unpacked on the next run), or write the "
                    f"splits {', '.join(s + spec.suffix for s in SPLITS)} (from {_expected_files(spec)}) into "
                    f"{target}/ yourself"
                ) from None
            out.flush()
            os.fsync(out.fileno())
        digest = h.hexdigest()
        if sha256 is not None and digest != sha256.lower():
            raise DownloadError(
                f"{url} has SHA-256 {digest}, not the expected {sha256}: the download is corrupt or the "
                "file has changed; nothing was kept. If you trust the new file, set data.sha256 to its "
                "checksum (or null to record it on first use)"
            )
        os.replace(tmp, dest)
        return digest
    finally:
        tmp.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            dest.parent.rmdir()  # only if empty: a failed first download leaves no trace


# -- archives: members are checked, then read (never extracted to the paths they name) -------------
def _safe_name(name: str, archive: Path) -> str:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise DownloadError(f"{archive} holds a member with an absolute path ({name!r}): refused")
    parts = [p for p in path.parts if p not in ("", ".")]
    depth = 0
    for part in parts:
        depth += -1 if part == ".." else 1
        if depth < 0:
            raise DownloadError(
                f"{archive} holds a member that climbs out of its folder ({name!r}): refused"
            )
    return str(PurePosixPath(*parts)) if parts else ""


@contextmanager
def _open_archive(path: Path) -> Iterator[dict[str, object]]:
    """name -> opener for each regular member of a zip/tar archive (or the file itself, named "")."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            members = {}
            for info in zf.infolist():
                name = _safe_name(info.filename, path)
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise DownloadError(
                        f"{path} holds a symbolic link ({info.filename!r}): refused"
                    )
                if not info.is_dir():
                    members[name] = lambda info=info: zf.open(info)
            yield members
        return
    if tarfile.is_tarfile(path):
        with tarfile.open(path) as tf:
            members = {}
            for info in tf.getmembers():
                name = _safe_name(info.name, path)
                if info.issym() or info.islnk() or info.isdev():
                    raise DownloadError(f"{path} holds a link or device ({info.name!r}): refused")
                if info.isfile():
                    members[name] = lambda info=info: tf.extractfile(info)
            yield members
        return
    yield {"": lambda: open(path, "rb")}  # noqa: SIM115 (closed by the caller)


def _copy(src: IO[bytes], dest: Path, start: int = 0, stop: int | None = None) -> None:
    if start:
        src.seek(start)
    left = None if stop is None else stop - start
    with open(dest, "wb") as out:
        while left is None or left > 0:
            block = src.read(CHUNK if left is None else min(CHUNK, left))
            if not block:
                break
            out.write(block)
            if left is not None:
                left -= len(block)


def _write_splits(spec: DatasetSpec, archive: Path, folder: Path) -> None:
    with _open_archive(archive) as members:
        if spec.members:
            for split in SPLITS:
                name = spec.members[split]
                if name not in members:
                    raise DownloadError(
                        f"{archive} has no member {name}: expected {_expected_files(spec)}"
                    )
                with members[name]() as src:
                    _copy(src, folder / f"{split}.txt")
            return
        name = spec.source or ""
        if name not in members:
            if name == "" and len(members) == 1:
                name = next(iter(members))
            else:
                raise DownloadError(
                    f"{archive} has no member {name!r}: expected {_expected_files(spec)}"
                )
        if spec.write is not None:
            with members[name]() as src:
                spec.write(src, folder)
            return
        source = folder / ".source"
        with members[name]() as src:
            _copy(src, source)
        size = source.stat().st_size
        with open(source, "rb") as src:
            for split in SPLITS:
                lo, hi = spec.cuts[split]
                _copy(src, folder / f"{split}.txt", size * lo // 100, size * hi // 100)
        source.unlink()


def _check_built_from(target: Path, url: str | None, sha256: str | None) -> None:
    """A given data.url / data.sha256 must be what the cached corpus was built from: a changed one is
    not silently ignored."""
    built = json.loads((target / "manifest.json").read_text())
    if url is not None and url != built.get("url"):
        raise DownloadError(
            f"data.url={url} but {target} was built from {built.get('url')}: delete {target} to "
            "build it from the new URL, or drop data.url"
        )
    if sha256 is not None and sha256.lower() != str(built.get("sha256", "")).lower():
        raise DownloadError(
            f"data.sha256={sha256} but {target} was built from a file with SHA-256 "
            f"{built.get('sha256')}: delete {target} to download and check it again, or drop data.sha256"
        )


def prepare_dataset(
    name: str, data_dir: str | Path, url: str | None = None, sha256: str | None = None
) -> Path:
    """The folder of `name`'s train/valid/test.txt, downloaded and built on first use.

    `url` and `sha256` replace the published ones (tests point them at local `file://` archives);
    `sha256=None` with the published URL uses the published checksum, if there is one.
    """
    if name not in DATASETS:
        raise CorpusError(
            f"data.dataset={name!r} is not a known corpus; choose one of {sorted(DATASETS)}"
        )
    spec = DATASETS[name]
    root = Path(data_dir).expanduser()
    target = root / "datasets" / name
    if (target / "manifest.json").is_file():  # ready: read offline
        _check_built_from(target, url, sha256)
        return target
    url = url or spec.url
    expected = sha256 if sha256 is not None else (spec.sha256 if url == spec.url else None)
    archive = root / "downloads" / _file_name(url)
    if (
        archive.is_file()
    ):  # downloaded by an earlier run (e.g. data=ptb for data=ptb_char) or by hand
        digest = sha256_of(archive)
        if expected is not None and digest != expected.lower():
            raise DownloadError(
                f"{archive} has SHA-256 {digest}, not the expected {expected}: delete it (or replace it "
                f"with the file from {url}) and run again"
            )
        log.info("data: using %s (SHA-256 %s)", archive, digest)
    else:
        log.info("data: downloading %s to %s", url, archive)
        digest = _fetch(url, archive, expected, target, spec)
    if expected is None:
        log.warning(
            "data: no published SHA-256 for %s: recorded %s (trusted from now on; compare it with a "
            "copy you trust)",
            url,
            digest,
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    try:
        _write_splits(spec, archive, tmp)
        manifest = {
            "dataset": name,
            "about": spec.about,
            "url": url,
            "file": str(archive),
            "sha256": digest,
            "sha256_checked": expected is not None,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1))
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / "manifest.json").is_file():  # not another process finishing first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("data: %s ready in %s", name, target)
    return target


__all__ = ["DATASETS", "DatasetSpec", "DownloadError", "prepare_dataset", "sha256_of"]
