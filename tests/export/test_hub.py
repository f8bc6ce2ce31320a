"""The Hugging Face Hub format: save_pretrained / from_pretrained, rnnlm-export hub, a local Hub cache
read offline through hf_hub_download, and one line for a missing, changed or foreign file."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from conftest import run_script
from rnnlm import LanguageModel
from rnnlm.inference import hub
from rnnlm.inference.hub import PretrainedError


@pytest.fixture(scope="module")
def trained(tiny_checkpoint: Path) -> Path:
    """The session's tiny character-level GRU checkpoint (conftest.tiny_checkpoint)."""
    return tiny_checkpoint


@pytest.fixture(scope="module")
def exported(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python src/export.py hub ckpt_path=... out=...`: the front door writes the folder."""
    folder = tmp_path_factory.mktemp("exported") / "tiny-lstm"
    out = run_script("export", ["hub", f"ckpt_path={trained}", f"out={folder}"])
    assert out.returncode == 0, out.stderr[-2000:]
    assert "saved" in out.stdout
    return folder


def test_export_writes_safetensors_json_and_a_model_card(exported: Path, trained: Path) -> None:
    assert sorted(p.name for p in exported.iterdir()) == [
        "README.md",
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    ]
    config = json.loads((exported / "config.json").read_text())
    assert config["library_name"] == "rnnlm"
    assert config["model"]["cell"] == "gru"
    card = (exported / "README.md").read_text()
    assert "library_name: rnnlm" in card
    assert "src/train.py" in card  # the command that trained it
    assert "best validation loss" in card and "not recorded" not in card
    assert "corpus" in card


def test_round_trip_gives_the_same_logits_and_greedy_text(exported: Path, trained: Path) -> None:
    original = LanguageModel.load(trained)
    again = LanguageModel.from_pretrained(exported)
    x = torch.randint(0, original.tokenizer.vocab_size, (2, 12))
    torch.testing.assert_close(again.model(x)[0], original.model(x)[0], rtol=0, atol=0)
    prompt = "the king"
    assert again.generate(prompt, 15, temperature=0) == original.generate(prompt, 15, temperature=0)
    # and load() takes the folder wherever it takes a checkpoint
    assert LanguageModel.load(exported).generate(prompt, 5, temperature=0) == again.generate(
        prompt, 5, temperature=0
    )


def _greedy_output(ckpt: Path) -> str:
    """What `src/generate.py ckpt_path=<ckpt> prompt=the max_new_tokens=5 temperature=0` prints."""
    return LanguageModel.load(ckpt).generate("the", 5, temperature=0) + "\n"


def test_generate_accepts_the_folder(exported: Path, trained: Path) -> None:
    args = ["prompt=the", "max_new_tokens=5", "temperature=0"]
    from_folder = run_script("generate", [f"ckpt_path={exported}", *args])
    assert from_folder.returncode == 0, from_folder.stderr[-2000:]
    assert from_folder.stdout == _greedy_output(trained)


def _hub_cache(exported: Path, cache: Path, repo_id: str) -> None:
    """The layout huggingface_hub keeps a downloaded repo in: refs/main -> snapshots/<commit>/."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for p in exported.iterdir():
        shutil.copy(p, snapshot / p.name)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)


def test_a_repo_id_is_read_from_the_local_hub_cache_offline(
    exported: Path, trained: Path, tmp_path: Path
) -> None:
    _hub_cache(exported, tmp_path / "hub", "someone/tiny-lstm")
    env = {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub")}
    args = ["prompt=the", "max_new_tokens=5", "temperature=0"]
    out = run_script("generate", ["ckpt_path=someone/tiny-lstm", *args], env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout == _greedy_output(trained)
    # a repo that is not in the cache: one line (tests run with HF_HUB_OFFLINE=1, conftest)
    with pytest.raises(PretrainedError, match="not in the local Hub cache") as err:
        LanguageModel.from_pretrained("someone/other", cache_dir=tmp_path / "hub")
    assert "\n" not in str(err.value)


def test_in_process_cache_dir(
    exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _hub_cache(exported, tmp_path, "someone/tiny-lstm")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    lm = LanguageModel.from_pretrained("someone/tiny-lstm", cache_dir=tmp_path)
    assert lm.tokenizer.kind == "char"


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda d: (d / "model.safetensors").unlink(), "has no model.safetensors"),
        (lambda d: (d / "tokenizer.json").unlink(), "has no tokenizer.json"),
        (lambda d: (d / "config.json").write_text("{not json"), "is not valid JSON"),
        (
            lambda d: (d / "model.safetensors").write_bytes(
                (d / "model.safetensors").read_bytes()[:-8] + b"\0" * 8
            ),
            "does not match the SHA-256",
        ),
        (
            lambda d: (d / "tokenizer.json").write_text('{"kind": "char", "chars": "ab"}'),
            "does not match the SHA-256",
        ),
        (
            lambda d: (d / "config.json").write_text(json.dumps({"library_name": "transformers"})),
            "was not written by rnnlm",
        ),
    ],
    ids=[
        "no-weights",
        "no-tokenizer",
        "bad-json",
        "changed-weights",
        "swapped-tokenizer",
        "foreign",
    ],
)
def test_a_damaged_folder_is_refused_in_one_line(
    exported: Path, tmp_path: Path, damage, words: str
) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(exported, folder)
    damage(folder)
    with pytest.raises(PretrainedError, match=words):
        LanguageModel.load(folder)


def test_the_command_line_shows_a_damaged_folder_in_one_line(
    exported: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(exported, folder)
    (folder / "model.safetensors").unlink()
    out = run_script("generate", [f"ckpt_path={folder}", "max_new_tokens=3"])
    assert out.returncode != 0
    assert out.stderr.startswith("error: ") and len(out.stderr.strip().splitlines()) == 1
    assert "has no model.safetensors" in out.stderr


def test_a_weight_that_does_not_fit_the_config_is_one_line(exported: Path, tmp_path: Path) -> None:
    folder = tmp_path / "copy"
    shutil.copytree(exported, folder)
    config = json.loads((folder / "config.json").read_text())
    config["model"]["hidden_dim"] = 32
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(PretrainedError, match="does not fit the model"):
        LanguageModel.load(folder)


def test_push_to_hub_creates_the_repo_and_uploads_the_folder(
    exported: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The upload itself needs the network; what rnnlm sends to huggingface_hub is checked here."""
    import huggingface_hub

    calls: list[tuple[str, dict]] = []

    class FakeApi:
        def __init__(self, token=None) -> None:
            calls.append(("init", {"token": token}))

        def create_repo(self, repo_id, **kw):
            calls.append(("create_repo", {"repo_id": repo_id, **kw}))

        def upload_folder(self, repo_id, folder_path, **kw):
            files = sorted(p.name for p in Path(folder_path).iterdir())
            calls.append(("upload_folder", {"repo_id": repo_id, "files": files}))

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    url = LanguageModel.from_pretrained(exported).push_to_hub("someone/tiny", private=True)
    assert url == "https://huggingface.co/someone/tiny"
    assert calls[1] == (
        "create_repo",
        {"repo_id": "someone/tiny", "private": True, "exist_ok": True},
    )
    assert calls[2][1]["files"] == [
        "README.md",
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    ]
    with pytest.raises(PretrainedError, match="not a Hub repo id"):
        hub.push_folder(exported, "no spaces allowed")


def test_a_missing_path_that_is_no_repo_id_keeps_the_checkpoint_message(tmp_path: Path) -> None:
    from rnnlm.inference.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="does not exist"):
        LanguageModel.load(tmp_path / "nothing.ckpt")


def test_a_missing_hub_extra_is_one_line(
    exported: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lm = LanguageModel.from_pretrained(exported)
    for name in ("safetensors", "safetensors.torch"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(PretrainedError, match=r"pip install 'rnnlm\[hub\]'"):
        LanguageModel.from_pretrained(exported)
    with pytest.raises(PretrainedError, match=r"pip install 'rnnlm\[hub\]'"):
        lm.save_pretrained(tmp_path / "again")
