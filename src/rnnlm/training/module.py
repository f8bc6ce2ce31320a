"""The LightningModule: where a plain language model meets the token stream.

Truncated BPTT is done by hand (Lightning 2 has none): the hidden state is carried on the module from
one window to the next, detached each step, one state per stage, reset at the start of each epoch.

With `optim=nt_asgd`, once the optimizer has started averaging, validation, test and every checkpoint's
`state_dict` use the averaged weights; the live weights travel in the checkpoint beside them so that a
resumed run continues exactly. With `data.variable_bptt=true` each step's learning rate is scaled by its
window length / bptt (AWD-LSTM).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Iterator
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.fabric.utilities.apply_func import move_data_to_device
from torch import Tensor

from rnnlm.checkpoint import FORMAT
from rnnlm.data.tokenizers import CHAR_LEVEL, Tokenizer, tokenizer_from_dict
from rnnlm.errors import UserError
from rnnlm.models import detach_hidden, num_parameters
from rnnlm.training.metrics import LN2, TokenMeanLoss, perplexity
from rnnlm.training.nt_asgd import NTASGD, find_nt_asgd

log = logging.getLogger(__name__)

STAGES = ("train", "val", "test")
# Optimisers that take the sparse gradient of `model.sparse_embedding=true`.
SPARSE_OPTIMIZERS = (torch.optim.SGD, torch.optim.Adagrad)  # (SparseAdam takes no dense gradient)


def _check_sparse_support(optimizer: torch.optim.Optimizer) -> None:
    name = type(optimizer).__name__
    if not isinstance(optimizer, SPARSE_OPTIMIZERS) or optimizer.defaults.get("fused"):
        raise UserError(
            f"model.sparse_embedding=true gives the embedding a sparse gradient, which {name}"
            f"{' (fused)' if optimizer.defaults.get('fused') else ''} cannot take: use optim=sgd "
            "(without fused) or set model.sparse_embedding=false"
        )


def _plain_sgd(optimizer: Any) -> bool:
    """SGD whose update is exactly p -= lr * grad (so scaling lr is scaling grad)."""
    optimizer = getattr(optimizer, "_optimizer", optimizer)  # a LightningOptimizer wraps it
    return type(optimizer) is torch.optim.SGD and all(
        not g["momentum"]
        and not g["weight_decay"]
        and not g.get("maximize", False)
        and not g.get("differentiable", False)
        and not isinstance(g["lr"], torch.Tensor)
        for g in optimizer.param_groups
    )


class NonFiniteError(UserError):
    """The loss or the gradients became inf/NaN (trainer.detect_nonfinite=true)."""


class LMModule(L.LightningModule):
    """Trains `model` (built from its plain config dict) with mean per-token cross-entropy.

    Every constructor argument but `tokenizer` is a plain container, so checkpoints load with
    `torch.load(weights_only=True)`; the tokenizer is stored beside them as a plain dict.
    """

    def __init__(
        self,
        model: dict,
        optim: dict,
        vocab_size: int,
        scheduler: dict | None = None,
        tokenizer: Tokenizer | None = None,
        config: dict | None = None,
        detect_nonfinite: bool = True,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["tokenizer", "config"], logger=False)
        self.model = instantiate(model, vocab_size=vocab_size)
        # `compile=true`: torch.compile the forward + loss (the model's own modules and weights are
        # untouched, so checkpoints are the same); the first steps pay for the compilation.
        self._nll = torch.compile(self.model.nll) if compile else self.model.nll
        self.tokenizer = tokenizer
        self.config = config or {}  # the composed run config, kept in checkpoints for eval/resume
        self.char_level = tokenizer is not None and tokenizer.kind in CHAR_LEVEL
        self.mean_loss = torch.nn.ModuleDict({f"{s}_": TokenMeanLoss() for s in STAGES})
        self.hidden: dict[str, Any] = dict.fromkeys(STAGES)
        self.best_val_loss = math.inf
        self.tokens_seen = (
            0  # training target tokens over the whole run, all ranks (kept on resume)
        )
        self.tokens_trained_here = 0  # ... in this process's lifetime, for throughput
        # Wall time spent fitting, over the whole run (kept on resume): the x-axis of `train/time_s`.
        self.fit_seconds_before = 0.0
        self._fit_started: float | None = None
        self.windows_done = 0  # training windows done in the current epoch
        self._resume: dict[str, Any] | None = None  # stream position restored from a checkpoint
        self._lr_scale = 1.0  # variable-length BPTT: this step's window length / bptt
        self._swapped: list | None = None  # live weights while the NT-ASGD average is swapped in
        # A checkpoint loaded to test holds the weights to score (the average, if there was one then).
        self._weights_from_checkpoint = False
        self.corpus_fingerprint: str | None = (
            None  # the text trained on (set by train(), checked on resume)
        )

    @property
    def num_parameters(self) -> int:
        return num_parameters(self.model)

    # -- the step ------------------------------------------------------------------------------------
    def _step(self, stage: str, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, int]:
        """The window's loss (mean per token when training, summed otherwise) and its token count.

        The model computes the loss itself (`RNNLM.nll`): with the full softmax that is the fused,
        chunked linear + cross-entropy, which never builds the (B*T, V) logits.
        """
        x, y = batch  # (B, T) inputs and targets
        reduction = "mean" if stage == "train" else "sum"
        loss, hidden = self._nll(x, y, self.hidden[stage], reduction)
        self.hidden[stage] = detach_hidden(hidden)
        n = y.numel()
        nll_sum = loss.detach() * n if reduction == "mean" else loss
        self.mean_loss[f"{stage}_"].update(nll_sum, n)
        return loss, n

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        loss, n = self._step("train", batch)
        if self.hparams.detect_nonfinite and not torch.isfinite(loss):
            raise NonFiniteError(self._nonfinite_message(f"non-finite loss ({float(loss)})"))
        self.tokens_seen += n * self.trainer.world_size
        self.windows_done += 1
        self.tokens_trained_here += n * self.trainer.world_size
        self.log("train/loss", loss, prog_bar=True)
        if self._writes_logs():
            self.log("train/ppl", loss.detach().exp(), prog_bar=True)
            if self.char_level:
                self.log("train/bpc", loss.detach() / LN2)
        # AR/TAR (model.ar_alpha, model.tar_beta): minimised with the loss, not part of train/loss.
        penalty = self.model.pop_penalty() if hasattr(self.model, "pop_penalty") else None
        return loss if penalty is None else loss + penalty

    def _writes_logs(self) -> bool:
        """Whether the loggers record this step (every `trainer.log_every_n_steps`).

        Each `self.log` costs a fraction of a millisecond of Lightning bookkeeping, a few percent of a
        small model's step: the metrics that only the loggers read are logged on the steps they record.
        """
        connector = getattr(self._trainer, "_logger_connector", None)
        return bool(getattr(connector, "should_update_logs", True))

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step("val", batch)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        self._step("test", batch)

    # -- epoch boundaries: reset the carried state, log split-level metrics --------------------------
    def on_train_epoch_start(self) -> None:
        self.mean_loss["train_"].reset()
        if self._resume is None:
            self.hidden["train"] = None
            self.windows_done = 0

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self._resume is not None:
            # Continuing mid-epoch from a checkpoint: the carried state of the stream, and dropout
            # masks exactly where the interrupted run stopped. (The data loaders draw their seeds from
            # their own generators, so nothing else consumes the global RNG in between.)
            # Under DDP the checkpoint holds every rank's state ("ranks"). Resumed on another number of
            # ranks (or from a checkpoint without them), rank 0 takes the saved state and the other
            # ranks, whose shards have changed, restart their columns from a zero state as at an
            # epoch start. Saved on the CPU: moved to this device.
            state = self._resume
            ranks = state.get("ranks")
            if ranks is not None and len(ranks) == self.trainer.world_size:
                state = {**state, **ranks[self.global_rank]}
            elif self.global_rank > 0:
                state = {**state, "hidden": None}
            self.hidden["train"] = move_data_to_device(state["hidden"], self.device)
            self.windows_done = state["windows_done"]
            if state["rng"] is not None:
                torch.set_rng_state(state["rng"])
            if state.get("cuda_rng") is not None and self.device.type == "cuda":
                torch.cuda.set_rng_state(state["cuda_rng"], self.device)
            self._resume = None
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        if getattr(datamodule, "variable_bptt", False):
            self._lr_scale = batch[0].size(1) / datamodule.bptt
        else:
            self._lr_scale = 1.0

    def run_totals(self) -> dict[str, int]:
        """What result.json counts: optimizer steps, finished epochs, training tokens (all ranks)."""
        return {
            "steps": self.global_step,
            "epochs": self.current_epoch,
            "tokens_seen": self.tokens_seen,
            "tokens_trained_here": self.tokens_trained_here,
        }

    def on_train_end(self) -> None:
        # Under trainer.strategy=ddp_spawn the launching process gets rank 0's callback_metrics back,
        # not its loop counters or this module's attributes: leave the totals there for run.py. Not
        # logged, so they draw no curves in TensorBoard; int64, as float32 rounds counts past 2**24.
        self.trainer.callback_metrics.update(
            {f"run/{key}": torch.tensor(value) for key, value in self.run_totals().items()}
        )

    # -- NT-ASGD: evaluate with the averaged weights once averaging has started ----------------------
    def _averager(self) -> Any:
        if self._trainer is None:
            return None
        opt = find_nt_asgd(self.trainer.optimizers)
        return opt if opt is not None and opt.averaging else None

    def _swap_in_average(self) -> None:
        opt = self._averager()
        if opt is not None and self._swapped is None and not self._weights_from_checkpoint:
            self._swapped = opt.swap_in(self.model.parameters())

    def _swap_back(self) -> None:
        if self._swapped is not None:
            find_nt_asgd(self.trainer.optimizers).restore(self._swapped)
            self._swapped = None

    @contextlib.contextmanager
    def evaluation_weights(self) -> Iterator[None]:
        """The weights validation scores (NT-ASGD's average once it has started) for the duration: what
        the training-time text samples are drawn from, after validation has put the live ones back."""
        swapped_here = self._swapped is None
        self._swap_in_average()
        try:
            yield
        finally:
            if swapped_here:
                self._swap_back()

    def on_fit_start(self) -> None:
        self._fit_started = time.perf_counter()

    def fit_seconds(self) -> float:
        """Seconds spent fitting over the whole run: earlier attempts' and this one's so far."""
        here = time.perf_counter() - self._fit_started if self._fit_started is not None else 0.0
        return self.fit_seconds_before + here

    def on_validation_epoch_start(self) -> None:
        self.hidden["val"] = None
        self.mean_loss["val_"].reset()
        self._swap_in_average()

    def on_test_epoch_start(self) -> None:
        self.hidden["test"] = None
        self.mean_loss["test_"].reset()
        self._swap_in_average()

    def _log_split(self, stage: str) -> float:
        loss = float(self.mean_loss[f"{stage}_"].compute())  # summed over batches and ranks
        self.mean_loss[f"{stage}_"].reset()
        self.log(f"{stage}/loss", loss, prog_bar=stage == "val")
        self.log(f"{stage}/ppl", perplexity(loss), prog_bar=stage == "val")
        if self.char_level:
            self.log(f"{stage}/bpc", loss / LN2)
        return loss

    def on_validation_epoch_end(self) -> None:
        loss = self._log_split("val")
        self._swap_back()
        if not self.trainer.sanity_checking:
            self.best_val_loss = min(self.best_val_loss, loss)
            if self.trainer.state.fn == "fit":
                self._step_plateau(loss)
            opt = find_nt_asgd(self.trainer.optimizers)
            if opt is not None:
                if opt.observe(loss):
                    log.info(
                        "NT-ASGD: validation loss %.4f has not improved for %d validations: averaging "
                        "from step %d on (evaluation and checkpoints use the averaged weights)",
                        loss,
                        opt.param_groups[0]["nt_asgd"]["nonmono"],
                        self.global_step,
                    )
                self.log("train/averaging", float(opt.averaging))
        if math.isfinite(self.best_val_loss):
            # The metric shown next to the hyperparameters in TensorBoard's HPARAMS tab.
            self.log("val/best_ppl", perplexity(self.best_val_loss))
        self.log("train/tokens_seen", float(self.tokens_seen))
        self.log("train/time_s", self.fit_seconds())

    def on_test_epoch_end(self) -> None:
        self._log_split("test")
        self._swap_back()

    # -- optimisation --------------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        params: Any = self.parameters()
        if self.model.embedding.sparse:
            # The sparse gradient in a group of its own, so the dense ones keep the multi-tensor
            # (foreach) update: torch.optim falls back to one update per tensor in a group with a
            # sparse gradient.
            sparse = self.model.embedding.weight
            params = [
                {"params": [p for p in self.parameters() if p is not sparse]},
                {"params": [sparse]},
            ]
        optimizer = instantiate(self.hparams.optim, _partial_=True)(params)
        if self.model.embedding.sparse:
            _check_sparse_support(optimizer)
        if isinstance(optimizer, NTASGD) and optimizer.average_after is not None:
            total = self.trainer.estimated_stepping_batches
            if not math.isfinite(total):
                raise UserError(
                    "optim.average_after is a fraction of the run, which has no end here: set "
                    "trainer.max_steps or trainer.max_epochs, or set optim.average_after=null"
                )
            optimizer.plan(int(total))
        sched_cfg = dict(self.hparams.scheduler or {})
        if not sched_cfg:
            return optimizer
        interval = sched_cfg.pop("interval", "epoch")
        monitor = sched_cfg.pop("monitor", "val/loss")
        if sched_cfg.get("T_max", "unset") is None:  # cosine over the whole run
            sched_cfg["T_max"] = max(int(self.trainer.estimated_stepping_batches), 1)
        scheduler = instantiate(sched_cfg, optimizer=optimizer)
        # A plateau scheduler is stepped by the module itself after each validation, with that
        # validation's loss (see lr_scheduler_step): Lightning's own stepping at epoch ends would
        # fail when no validation has run yet in the epoch (validation every N steps across epochs)
        # and would reuse a stale loss otherwise.
        plateau = isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler,
                "interval": interval,
                "monitor": monitor,
                "strict": not plateau,
            },
        }

    def lr_scheduler_step(self, scheduler: Any, metric: Any) -> None:
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            return  # stepped in on_validation_epoch_end
        if metric is None:
            scheduler.step()
        else:
            scheduler.step(metric)

    def _step_plateau(self, val_loss: float) -> None:
        for config in self.trainer.lr_scheduler_configs:
            if isinstance(config.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                config.scheduler.step(val_loss)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self._writes_logs():
            self.log("train/lr", optimizer.param_groups[0]["lr"])

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip by the global norm, and stop on inf/NaN gradients before the optimiser step.

        A finite loss can still give non-finite gradients; stepping on them would poison the weights and
        the next checkpoint. The check reuses the norm that clipping computes anyway.

        For plain SGD (no momentum, no weight decay) the clipping factor goes into this step's learning
        rate instead of into the gradients: p - (lr * c) * g is p - lr * (c * g), without a pass over
        every gradient (`optimizer_step` puts the learning rate back).
        """
        if not self.hparams.detect_nonfinite:
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
            return
        params = [p for p in self.parameters() if p.grad is not None]
        if not params:
            return
        norm = torch.nn.utils.get_total_norm([p.grad for p in params], foreach=True)
        if not torch.isfinite(norm):
            raise NonFiniteError(self._nonfinite_message("non-finite gradients"))
        if gradient_clip_algorithm not in (None, "norm"):  # clipping each value: Lightning's own
            self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
            return
        if not gradient_clip_val:
            return
        if _plain_sgd(optimizer):
            coef = min(1.0, float(gradient_clip_val) / (float(norm) + 1e-6))
            if coef < 1.0:
                for group in optimizer.param_groups:
                    group["lr"] = group["lr"] * coef
        else:
            torch.nn.utils.clip_grads_with_norm_(params, gradient_clip_val, norm)

    def optimizer_step(
        self,
        epoch: int,
        batch_idx: int,
        optimizer: Any,
        optimizer_closure: Any = None,
    ) -> None:
        # Variable-length BPTT: a window of seq_len tokens steps with lr * seq_len / bptt (AWD-LSTM), so
        # short windows do not weigh as much as full ones. The closure (step, backward, clipping) runs
        # inside optimizer.step(), and clipping may scale this step's learning rate too (see
        # configure_gradient_clipping): the scheduled rates are restored afterwards.
        saved = [group["lr"] for group in optimizer.param_groups]
        if self._lr_scale != 1.0:
            for group in optimizer.param_groups:
                group["lr"] = group["lr"] * self._lr_scale
        try:
            super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        finally:
            for group, lr in zip(optimizer.param_groups, saved, strict=True):
                group["lr"] = lr

    def _nonfinite_message(self, what: str) -> str:
        ckpt = self.trainer.checkpoint_callback
        last = getattr(ckpt, "last_model_path", "") or getattr(ckpt, "best_model_path", "") or ""
        fix = "lower optim.lr or keep trainer.gradient_clip_val on"
        good = (
            f"the last good checkpoint is {last} ({fix}, then resume from it)"
            if last
            else f"no checkpoint was written yet ({fix})"
        )
        return f"{what} at step {self.global_step}: training stopped before the weights were changed; {good}"

    # -- checkpoints carry everything needed to use the model without the config ---------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        windows_done, hidden = self.windows_done, self.hidden["train"]
        if self._trainer is None or windows_done >= self.trainer.num_training_batches:
            windows_done, hidden = 0, None  # the epoch is complete: the next one starts afresh
        on_gpu = self.device.type == "cuda"
        rng = torch.get_rng_state()
        cuda_rng = torch.cuda.get_rng_state(self.device) if on_gpu else None
        checkpoint["rnnlm"] = {
            "format": FORMAT,
            "tokenizer": self.tokenizer.to_dict() if self.tokenizer else None,
            "corpus": self.corpus_fingerprint,
            "config": self.config,
            "best_val_loss": self.best_val_loss,
            "tokens_seen": self.tokens_seen,
            "fit_seconds": self.fit_seconds(),
            # Where the training stream stands, so a mid-epoch checkpoint resumes at the exact window.
            "windows_done": windows_done,
            "train_hidden": hidden,
            "rng": rng,
            # dropout masks on a GPU come from its own generator
            "cuda_rng": cuda_rng,
        }
        if self._trainer is not None and self.trainer.world_size > 1:
            # Under DDP each rank carries the state of its own shard and draws its own dropout masks:
            # keep every rank's (every rank saves: Lightning dumps the checkpoint on all of them).
            checkpoint["rnnlm"]["ranks"] = self._gather_ranks(
                {"hidden": hidden, "rng": rng, "cuda_rng": cuda_rng}
            )
        opt = self._averager()
        if opt is not None:
            # NT-ASGD: the checkpoint's weights are the average (what eval/generate load); the live
            # weights ride along for an exact resume. Tied weights appear under both of their names.
            live = {}
            for name, p in self.model.named_parameters(remove_duplicate=False):
                key = f"model.{name}"
                if key in checkpoint["state_dict"]:
                    live[key] = checkpoint["state_dict"][key]
                    checkpoint["state_dict"][key] = opt.averaged(p).detach().clone()
            checkpoint["rnnlm"]["live_state_dict"] = live

    def _gather_ranks(self, state: dict[str, Any]) -> list[dict[str, Any]]:
        """Every rank's `state` (tensors, tuples of tensors or None, the same shapes on all ranks),
        on the CPU, as a list indexed by rank."""
        world = self.trainer.world_size
        out: list[dict[str, Any]] = [{} for _ in range(world)]
        for key, value in state.items():
            if value is None:
                for own in out:
                    own[key] = None
                continue
            parts = value if isinstance(value, tuple) else (value,)
            # (world, ...) per tensor; the collective runs on this rank's device (NCCL needs CUDA)
            gathered = [self.all_gather(t.to(self.device)).cpu() for t in parts]
            for rank, own in enumerate(out):
                # a copy: a view would save every rank's rows with each rank
                mine = tuple(g[rank].clone() for g in gathered)
                own[key] = mine if isinstance(value, tuple) else mine[0]
        return out

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get("rnnlm", {})
        if meta.get("tokenizer"):
            self.tokenizer = tokenizer_from_dict(meta["tokenizer"])
        self.best_val_loss = meta.get("best_val_loss", math.inf)
        live = meta.get("live_state_dict")
        fitting = self._trainer is not None and self.trainer.state.fn == "fit"
        if live and fitting:
            checkpoint["state_dict"].update(live)  # resume training from the live weights
        self._weights_from_checkpoint = not fitting
        if not fitting and self._trainer is not None:
            return  # testing a checkpoint: the run's counters and stream position stay this run's
        self.tokens_seen = meta.get("tokens_seen", 0)
        self.fit_seconds_before = float(meta.get("fit_seconds", 0.0))
        self._resume = {
            "windows_done": meta.get("windows_done", 0),
            "hidden": meta.get("train_hidden"),
            "rng": meta.get("rng"),
            "cuda_rng": meta.get("cuda_rng"),
            "ranks": meta.get("ranks"),
        }
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        if datamodule is not None and hasattr(datamodule, "resume_train_at"):
            datamodule.resume_train_at(self._resume["windows_done"], checkpoint.get("epoch"))
