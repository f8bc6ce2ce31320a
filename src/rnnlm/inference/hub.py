"""The Hugging Face Hub format: a folder that holds a trained model without pickle or Lightning.

    model/                     lm.save_pretrained("model")  or  rnnlm-export hub ckpt_path=... out=model
      config.json              the model's arguments, the vocabulary size, what it was trained on,
                               and the SHA-256 of each other file
      model.safetensors        the weights (tied weights stored once)
      tokenizer.json           the tokenizer's plain dict (rnnlm.data.tokenizers)
      README.md                the model card: data, model, command, metrics, usage

`read_pretrained` accepts that folder or a Hub repo id (`user/name`, read through `hf_hub_download`,
so `HF_HUB_OFFLINE=1` and the local Hub cache work as for any Hub model). A missing, changed or
swapped file is refused in one line. The model is built in `rnnlm.inference.lm`, from plain arguments
(`build_from_checkpoint`), as from a checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rnnlm.errors import UserError

FORMAT = 1  # bumped when config.json's layout changes
CONFIG, WEIGHTS, TOKENIZER, CARD = "config.json", "model.safetensors", "tokenizer.json", "README.md"
CHECKED = (WEIGHTS, TOKENIZER)  # the files config.json records a checksum of
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")  # namespace/name, as the Hub spells them
EXTRA = "pip install 'rnnlm[hub]'"


class PretrainedError(UserError):
    """A pretrained folder or repo that cannot be used; the message names the file and the fix."""


@dataclass
class Pretrained:
    """What `read_pretrained` found: the parts `LanguageModel` is built from."""

    config: dict[str, Any]  # config.json
    tokenizer: dict[str, Any]  # tokenizer.json
    weights: Path  # model.safetensors, local
    source: str  # the folder or repo id, for messages


def is_pretrained(name: str | Path) -> bool:
    """Whether `name` names a pretrained folder or a Hub repo id rather than a checkpoint file."""
    p = Path(name).expanduser()
    if p.is_dir():
        return (p / CONFIG).is_file()
    return not p.exists() and p.suffix != ".ckpt" and bool(REPO_ID.match(str(name)))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_pretrained(
    folder: str | Path,
    model: Any,
    model_config: dict[str, Any],
    vocab_size: int,
    tokenizer: dict[str, Any],
    training: dict[str, Any],
) -> Path:
    """Write the four files into `folder` (created; files of the same names are replaced)."""
    try:
        from safetensors.torch import save_model
    except ImportError:
        raise PretrainedError(f"save_pretrained needs safetensors: {EXTRA}") from None

    out = Path(folder).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    save_model(
        model, str(out / WEIGHTS)
    )  # drops the duplicate of a tied weight, restores it on load
    (out / TOKENIZER).write_text(json.dumps(tokenizer, ensure_ascii=False), encoding="utf-8")
    config = {
        "library_name": "rnnlm",
        "rnnlm_format": FORMAT,
        "model": model_config,
        "vocab_size": vocab_size,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "tokenizer_kind": tokenizer.get("kind"),
        "training": training,
        "sha256": {name: sha256(out / name) for name in CHECKED},
    }
    (out / CONFIG).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", "utf-8")
    (out / CARD).write_text(model_card(config), encoding="utf-8")
    return out


def model_card(config: dict[str, Any]) -> str:
    """README.md for the Hub: what the model is, what it was trained on, with what command, how well."""
    model, training = config["model"], config.get("training") or {}
    kind = model.get("cell") or str(model.get("_target_", "")).rsplit(".", 1)[-1]
    run = training.get("config") or {}
    data = run.get("data") or {}
    corpus = data.get("dataset") or data.get("path") or data.get("hf_name")
    if corpus is None:
        corpus = "the Shakespeare plays bundled with rnnlm" if data else "not recorded"
    loss = training.get("best_val_loss")
    metrics = (
        f"- best validation loss: {loss:.4f} nats/token (perplexity {2.718281828459045**loss:.2f})"
        if isinstance(loss, int | float) and loss == loss and loss != float("inf")
        else "- best validation loss: not recorded"
    )
    tokens = training.get("tokens_seen")
    lines = [
        "---",
        "library_name: rnnlm",
        f"tags: [language-model, recurrent, {kind}]",
        "---",
        "",
        f"# {kind} language model (rnnlm)",
        "",
        "## Model",
        f"- {kind}, {config['num_parameters']:,} parameters, vocabulary of {config['vocab_size']:,} "
        f"{config.get('tokenizer_kind') or ''} tokens",
        *(f"- {k}: {v}" for k, v in model.items() if not k.startswith("_") and v is not None),
        "",
        "## Data",
        f"- corpus: {corpus}",
        f"- tokenizer: {data.get('tokenizer', config.get('tokenizer_kind'))}",
        "",
        "## Training",
        "```bash",
        training.get("command") or "(the command was not recorded)",
        "```",
        "",
        "## Metrics",
        metrics,
        *([f"- tokens seen in training: {tokens:,}"] if isinstance(tokens, int) else []),
        "",
        "## Usage",
        "```python",
        "from rnnlm import LanguageModel",
        'lm = LanguageModel.from_pretrained("<this folder or repo id>")',
        'print(lm.generate("ROMEO:", max_new_tokens=100))',
        "```",
        "",
    ]
    return "\n".join(lines)


def read_pretrained(
    name: str | Path, revision: str | None = None, cache_dir: str | Path | None = None
) -> Pretrained:
    """The parts of a pretrained folder or Hub repo, every checksum verified."""
    folder = Path(name).expanduser()
    if folder.is_dir():
        files = {n: folder / n for n in (CONFIG, *CHECKED)}
        for n, p in files.items():
            if not p.is_file():
                raise PretrainedError(
                    f"{folder} has no {n}: it is not a complete pretrained folder; save it again "
                    "(LanguageModel.save_pretrained, or rnnlm-export hub ckpt_path=... out=...)"
                )
    else:
        files = {n: _download(str(name), n, revision, cache_dir) for n in (CONFIG, *CHECKED)}
    config = _json(files[CONFIG], name)
    if not isinstance(config, dict) or config.get("library_name") != "rnnlm":
        raise PretrainedError(
            f"{name}: its {CONFIG} was not written by rnnlm (no library_name: rnnlm): use a folder "
            "saved by LanguageModel.save_pretrained or rnnlm-export hub"
        )
    if config.get("rnnlm_format") != FORMAT:
        raise PretrainedError(
            f"{name}: {CONFIG} has rnnlm_format {config.get('rnnlm_format')!r}, this rnnlm reads "
            f"{FORMAT}: export it again with this version"
        )
    for n in CHECKED:
        want = (config.get("sha256") or {}).get(n)
        if want != sha256(files[n]):
            raise PretrainedError(
                f"{name}: {n} does not match the SHA-256 that {CONFIG} records: the file changed "
                "after it was saved; download or export it again"
            )
    return Pretrained(config, _json(files[TOKENIZER], name), files[WEIGHTS], str(name))


def _json(path: Path, name: str | Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PretrainedError(
            f"{name}: {path.name} is not valid JSON ({err}): download or export it again"
        ) from None


def _download(repo_id: str, filename: str, revision: str | None, cache_dir: Any) -> Path:
    if not REPO_ID.match(repo_id):
        raise PretrainedError(
            f"{repo_id} is neither a checkpoint, a pretrained folder nor a Hub repo id (user/name): "
            "pass ckpt_path=<file>.ckpt, a folder saved by rnnlm-export hub, or user/name"
        )
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import (
            EntryNotFoundError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )
    except ImportError:
        raise PretrainedError(
            f"reading {repo_id} from the Hub needs huggingface_hub: {EXTRA}"
        ) from None
    try:
        path = hf_hub_download(
            repo_id, filename, revision=revision, cache_dir=cache_dir, library_name="rnnlm"
        )
        return Path(path)
    except LocalEntryNotFoundError:
        raise PretrainedError(
            f"{repo_id}: no folder of that name here, and {filename} of Hub repo {repo_id} is not in "
            "the local Hub cache while offline (HF_HUB_OFFLINE=1 or no network): download it once "
            "with a network, or pass a local folder"
        ) from None
    except RepositoryNotFoundError:
        raise PretrainedError(
            f"{repo_id}: no folder of that name here, and no Hub repo {repo_id} (or it is private: "
            "log in with `hf auth login`)"
        ) from None
    except RevisionNotFoundError:
        raise PretrainedError(f"{repo_id} has no revision {revision!r}") from None
    except EntryNotFoundError:
        raise PretrainedError(
            f"Hub repo {repo_id} has no {filename}: it is not an rnnlm model (rnnlm-export hub writes one)"
        ) from None
    except OSError as err:  # the network or the cache folder failed
        raise PretrainedError(
            f"{repo_id}: {filename} could not be read from the Hub ({err})"
        ) from None


def push_folder(
    folder: str | Path, repo_id: str, private: bool = False, token: str | None = None
) -> str:
    """Upload a pretrained folder to the Hub repo `repo_id` (created if absent); its URL."""
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise PretrainedError(f"push_to_hub needs huggingface_hub: {EXTRA}") from None
    if not REPO_ID.match(repo_id):
        raise PretrainedError(f"repo_id={repo_id!r} is not a Hub repo id: use user/name")
    api = HfApi(token=token)
    api.create_repo(repo_id, private=private, exist_ok=True)
    api.upload_folder(
        repo_id=repo_id, folder_path=str(folder), commit_message="rnnlm: upload model"
    )
    return f"https://huggingface.co/{repo_id}"


def push_pretrained(
    save: Callable[[str], Any], repo_id: str, private: bool = False, token: str | None = None
) -> str:
    """`save(folder)` into a temporary folder (a model's save_pretrained), then upload it; its URL."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        save(tmp)
        return push_folder(tmp, repo_id, private=private, token=token)
