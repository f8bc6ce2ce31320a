"""Standard corpora: downloaded once, checked, unpacked safely and atomically, read offline after."""

from __future__ import annotations

import hashlib
import io
import json
import math
import tarfile
import zipfile
from pathlib import Path

import pytest

from conftest import CONF_DIR, TINY_SIZES, train_in_process
from rnnlm.data.download import DownloadError, prepare_dataset

# ==================================================================================================
# Standard corpora: download once, checked, atomic, safe archives
# ==================================================================================================
SPLIT_TEXT = {
    s: f"= {s} =\n the {s} text of a tiny wiki .\n" * 30 for s in ("train", "valid", "test")
}


def _zip(path: Path, members: dict[str, str]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in members.items():
            zf.writestr(name, text)
    return path


def _wikitext_zip(folder: Path) -> tuple[str, str]:
    path = _zip(
        folder / "wikitext-2-v1.zip",
        {f"wikitext-2/wiki.{s}.tokens": t for s, t in SPLIT_TEXT.items()},
    )
    return path.as_uri(), hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_checks_unpacks_and_reads_offline_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url, sha = _wikitext_zip(tmp_path)
    cache = tmp_path / "cache"
    folder = prepare_dataset("wikitext2", cache, url=url, sha256=sha)
    for split, text in SPLIT_TEXT.items():
        assert (folder / f"{split}.txt").read_text() == text
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["sha256"] == sha and manifest["sha256_checked"]

    def no_network(*a, **k):  # noqa: ANN002, ANN003
        raise AssertionError("downloaded again")

    monkeypatch.setattr("urllib.request.urlopen", no_network)
    assert prepare_dataset("wikitext2", cache, url=url, sha256=sha) == folder
    assert prepare_dataset("wikitext2", cache) == folder
    # A changed source is not silently ignored in favour of the cached copy.
    with pytest.raises(DownloadError, match=r"data.url=file:///elsewhere.zip but .* delete"):
        prepare_dataset("wikitext2", cache, url="file:///elsewhere.zip")
    with pytest.raises(DownloadError, match=r"data.sha256=f+ but .* delete"):
        prepare_dataset("wikitext2", cache, url=url, sha256="f" * 64)


def test_checksum_mismatch_is_rejected_and_leaves_nothing(tmp_path: Path) -> None:
    url, _ = _wikitext_zip(tmp_path)
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match="SHA-256") as info:
        prepare_dataset("wikitext2", cache, url=url, sha256="0" * 64)
    assert "nothing was kept" in str(info.value)
    assert not cache.exists() or not any(p.is_file() for p in cache.rglob("*"))


@pytest.mark.parametrize("bad", ["../evil.txt", "wikitext-2/../../evil.txt", "/tmp/evil.txt"])
@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_archive_member_outside_the_folder_is_refused(tmp_path: Path, bad: str, kind: str) -> None:
    members = {f"wikitext-2/wiki.{s}.tokens": t for s, t in SPLIT_TEXT.items()}
    members[bad] = "gotcha"
    if kind == "zip":
        path = _zip(tmp_path / "wikitext-2-v1.zip", members)
    else:
        path = tmp_path / "wikitext-2-v1.tgz"
        with tarfile.open(path, "w:gz") as tf:
            for name, text in members.items():
                info = tarfile.TarInfo(name)
                data = text.encode()
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    cache = tmp_path / "cache"
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(DownloadError, match="refused"):
        prepare_dataset("wikitext2", cache, url=path.as_uri(), sha256=sha)
    assert not (cache / "datasets" / "wikitext2").exists()
    assert not list(cache.rglob("evil.txt")) and not (tmp_path / "evil.txt").exists()


def test_no_network_error_names_url_files_and_where_to_put_them(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9/wikitext-2-v1.zip"
    with pytest.raises(DownloadError) as info:
        prepare_dataset("wikitext2", tmp_path / "cache", url=url)
    msg = str(info.value)
    assert url in msg and "wiki.train.tokens" in msg
    assert str(tmp_path / "cache" / "downloads" / "wikitext-2-v1.zip") in msg
    assert str(tmp_path / "cache" / "datasets" / "wikitext2") in msg


def test_file_put_by_hand_is_used_and_unknown_checksum_is_recorded(tmp_path: Path) -> None:
    text = "".join(f"line {i} of the plays\n" for i in range(200))
    cache = tmp_path / "cache"
    (cache / "downloads").mkdir(parents=True)
    (cache / "downloads" / "input.txt").write_text(text)  # as a user without network would
    folder = prepare_dataset("tinyshakespeare", cache, url="http://127.0.0.1:9/input.txt")
    n = len(text.encode())
    assert (folder / "train.txt").read_bytes() == text.encode()[: n * 90 // 100]
    assert (folder / "valid.txt").read_bytes() == text.encode()[n * 90 // 100 :]
    assert (folder / "test.txt").read_bytes() == (folder / "valid.txt").read_bytes()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    assert manifest["sha256_checked"] is False  # trust on first use, said so


def test_data_config_downloads_then_trains(tmp_path: Path) -> None:
    url, sha = _wikitext_zip(tmp_path)
    ppl = train_in_process(
        [
            "data=wikitext2",
            f"data.url={url}",
            f"data.sha256={sha}",
            f"paths.data_dir={tmp_path / 'cache'}",
            *TINY_SIZES,
        ],
        tmp_path / "run",
    )
    assert math.isfinite(ppl)
    assert (tmp_path / "cache" / "datasets" / "wikitext2" / "manifest.json").is_file()


def test_every_standard_corpus_config_names_a_published_location() -> None:
    from omegaconf import OmegaConf

    from rnnlm.config.keys import DATASET_NAMES
    from rnnlm.data.download import DATASETS

    assert set(DATASET_NAMES) == set(DATASETS)
    for name in DATASETS:
        cfg = OmegaConf.load(CONF_DIR / "data" / f"{name}.yaml")
        assert cfg.dataset == name and cfg.url == DATASETS[name].url
        assert cfg.sha256 == DATASETS[name].sha256  # the config and the registry agree
