"""Train and evaluate one vision cell: the vision family's part of the cell contract (harmonic.cell).

Read top to bottom: setup() builds the data on the device, the model and optimiser and counts the FLOPs of one step;
fit() trains with early stopping on the validation split (curves.csv as it goes); finish() evaluates the selected
(best validation) and the final checkpoint on the test set once each and takes the PCA of the selected model's
penultimate features. train_cell returns them as a harmonic.cell.Trained; the contract writes metrics.json.
The hyperparameters and their defaults: harmonic/vision/config.py.
"""

from __future__ import annotations

import copy
import csv
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from harmonic.cell import Family, Trained
from harmonic.heads import head_label
from harmonic.runs import verified_data

from .backbones import CONV_BACKBONES, build_model
from .config import DEFAULTS, resolve
from .data import DeviceSplit, augment_batch, load_prepared, split_train_val

OUTPUTS = ("metrics.json", "curves.csv", "emissions.csv")  # rules/vision.smk declares these


def make_optimizer(params, hp):
    if hp["optimizer"] == "sgd":
        return torch.optim.SGD(
            params, lr=hp["lr"], momentum=hp["momentum"], weight_decay=hp["weight_decay"], nesterov=hp["nesterov"]
        )
    cls = torch.optim.AdamW if hp["optimizer"] == "adamw" else torch.optim.Adam
    return cls(params, lr=hp["lr"], weight_decay=hp["weight_decay"])


def make_scheduler(optimizer, hp):
    """Stepped once per epoch, as in the paper's code."""
    if hp["schedule"] == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=hp["step_size"], gamma=hp["gamma"])
    if hp["schedule"] == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=list(hp["milestones"]), gamma=hp["gamma"])
    if hp["schedule"] == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=hp["epochs"], eta_min=hp["min_lr"])
    return None


def regularizer_fn(hp):
    """Optional embedding regularizer of the original code (loss + lambda * R(features)); None when off."""
    if not hp["regularizer"] or not hp["regularizer_lambda"]:
        return None
    from harmonic.regularizers import distance_regularizer

    name, lam = hp["regularizer"], float(hp["regularizer_lambda"])
    return lambda features: lam * distance_regularizer(features, name)


def train_step_flops(model, x, y, autocast_dtype) -> int:
    """Forward + backward FLOPs of one training batch, counted on a copy so the real model's state is untouched.

    FlopCounterMode counts matrix products only, so it misses the elementwise work of broadcast heads (manhattan,
    hamming, ...: an N x C x D tensor). That part is added analytically from the registry
    (harmonic.distances.head_train_flops), so time per GFLOP compares heads fairly.
    """
    from torch.utils.flop_counter import FlopCounterMode

    from harmonic.distances import head_train_flops

    probe = copy.deepcopy(model)
    with FlopCounterMode(display=False) as counter:
        logits, _ = probe(x, autocast_dtype)
        F.cross_entropy(logits, y).backward()
    head = model.head
    extra = 0
    if head.distance != "baseline":
        extra = head_train_flops(head.distance, len(y), head.num_classes, head.in_features)
    return int(counter.get_total_flops()) + extra


def configure_cuda_math() -> None:
    """TF32 for convolutions (backbone only) but never for matrix products: the fp32 head's GEMM distances lose
    their precision near a centre under TF32 (docs/distances.md), and the backbone's linear layers run in bf16
    autocast on CUDA anyway."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True


def init_head_weight(head, std) -> None:
    """The original MNIST weight studies draw the head's weight (CE weight or harmonic centres) from N(0, std)."""
    if std is not None:
        with torch.no_grad():
            torch.nn.init.normal_(head.centres, mean=0.0, std=float(std))


@torch.no_grad()
def evaluate(model, split: DeviceSplit, batch_size: int, autocast_dtype, keep_features: int = 0):
    """Mean loss, accuracy, predictions and (optionally) the first keep_features penultimate feature rows."""
    model.eval()
    total_loss, preds, feats = 0.0, [], []
    kept = 0
    for x, y in split.batches(batch_size):
        logits, features = model(x, autocast_dtype)
        total_loss += F.cross_entropy(logits, y, reduction="sum").item()
        preds.append(logits.argmax(1))
        if kept < keep_features:
            feats.append(features[: keep_features - kept].float().cpu())
            kept += len(feats[-1])
    model.train()
    pred = torch.cat(preds)
    accuracy = (pred == split.y).float().mean().item()
    features = torch.cat(feats).numpy() if feats else None
    return total_loss / len(split), accuracy, pred.cpu().numpy(), features


def make_model(hp, meta, head, device, channels_last):
    """The backbone + head on the device, the head's init and trainable metric as hp says."""
    model = build_model(hp["backbone"], head, meta["image_shape"], meta["num_classes"])
    init_head_weight(model.head, hp["init_std"])
    if not hp["train_metric"]:
        for name in ("factor_raw", "log_diagonal"):
            if hasattr(model.head, name):
                getattr(model.head, name).requires_grad_(False)
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


@dataclass
class Setup:
    """What fit() and finish() work on: the device splits, the model, its optimiser and the run's settings."""

    hp: dict
    device: torch.device
    autocast_dtype: torch.dtype | None
    channels_last: bool
    compiled: bool
    meta: dict
    arrays: dict
    train_idx: np.ndarray
    train: DeviceSplit
    val: DeviceSplit
    test: DeviceSplit
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    generator: torch.Generator
    reg: object
    gflops_per_epoch: float


def setup(hp: dict, ctx) -> Setup:
    """Data on the device (validation carved from train with its own seed: the same split for every head), the
    model and optimiser, and the FLOPs of one training step (counted before torch.compile)."""
    dev = ctx.device
    on_cuda = dev.type == "cuda"
    if on_cuda:
        configure_cuda_math()
    autocast_dtype = torch.bfloat16 if on_cuda and hp["amp"] in ("auto", "bf16") else None
    channels_last = hp["backbone"] in CONV_BACKBONES if hp["channels_last"] == "auto" else bool(hp["channels_last"])
    channels_last = channels_last and on_cuda
    reg = regularizer_fn(hp)

    meta, arrays = load_prepared(ctx.inputs["data_dir"])
    train_idx, val_idx = split_train_val(len(arrays["y_train"]), hp["val_fraction"], hp["val_split_seed"])
    mean, std = (meta["mean"], meta["std"]) if hp["normalize"] else ([0.0], [1.0])
    mk = lambda x, y: DeviceSplit(x, y, mean, std, dev, channels_last)  # noqa: E731
    train = mk(arrays["x_train"][train_idx], arrays["y_train"][train_idx])
    val = mk(arrays["x_train"][val_idx], arrays["y_train"][val_idx])
    test = mk(arrays["x_test"], arrays["y_test"])

    model = make_model(hp, meta, hp["head"], dev, channels_last)
    optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad], hp)
    scheduler = make_scheduler(optimizer, hp)
    generator = torch.Generator().manual_seed(int(hp["seed"]))

    x0, y0 = next(train.batches(hp["batch_size"]))
    step_flops = train_step_flops(model, x0, y0, autocast_dtype)
    compiled = bool(hp["compile"] and on_cuda)
    if compiled:
        model.backbone = torch.compile(model.backbone)
    return Setup(
        hp=hp,
        device=dev,
        autocast_dtype=autocast_dtype,
        channels_last=channels_last,
        compiled=compiled,
        meta=meta,
        arrays=arrays,
        train_idx=train_idx,
        train=train,
        val=val,
        test=test,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        generator=generator,
        reg=reg,
        gflops_per_epoch=step_flops / len(y0) * len(train) / 1e9,
    )


class EpochLog:
    """Where each epoch's row goes: curves.csv (flushed every epoch, so a long run can be watched), and TensorBoard
    and Weights & Biases when switched on."""

    FIELDS = ["epoch", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "epoch_seconds"]

    def __init__(self, s: Setup, out_dir: Path):
        hp, self.tb, self.wandb_run = s.hp, None, None
        if hp["tensorboard"]:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out_dir / "tensorboard"))
        if hp["wandb"]:
            import wandb  # optional; only imported when switched on

            self.wandb_run = wandb.init(
                project=hp["wandb_project"],
                name=f"{s.meta['name']}/{hp['backbone']}/{hp['head'].get('distance')}/seed{hp['seed']}",
                config={"backbone": hp["backbone"], "head": hp["head"], **training_values(hp)},
                dir=str(out_dir),
                reinit=True,
            )
        self.file = open(out_dir / "curves.csv", "w", newline="")
        self.writer = csv.DictWriter(self.file, fieldnames=self.FIELDS)
        self.writer.writeheader()

    def write(self, row: dict) -> None:
        self.writer.writerow(row)
        self.file.flush()
        if self.tb is not None:
            for key, value in row.items():
                if key != "epoch":
                    self.tb.add_scalar(key, value, row["epoch"])
        if self.wandb_run is not None:
            self.wandb_run.log(row)

    def close(self) -> None:
        self.file.close()
        if self.tb is not None:
            self.tb.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()


def train_epoch(s: Setup) -> tuple[float, float, float]:
    """One pass over the shuffled training split: (mean loss, accuracy, seconds)."""
    hp, on_cuda = s.hp, s.device.type == "cuda"
    if on_cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    loss_sum = torch.zeros((), device=s.device)
    correct = torch.zeros((), device=s.device)
    for x, y in s.train.batches(hp["batch_size"], shuffle=True, generator=s.generator):
        if hp["augment"]:
            x = augment_batch(x, s.generator)
        logits, features = s.model(x, s.autocast_dtype)
        loss = F.cross_entropy(logits, y)
        if s.reg is not None:
            loss = loss + s.reg(features)
        s.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        s.optimizer.step()
        loss_sum += loss.detach() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
    train_loss = loss_sum.item() / len(s.train)  # one host sync per epoch
    if on_cuda:
        torch.cuda.synchronize()
    return train_loss, correct.item() / len(s.train), time.perf_counter() - t0


@dataclass
class Fit:
    """What training reached: the best-validation checkpoint, the last validation, timings, divergence."""

    best: dict = field(
        default_factory=lambda: {"val_accuracy": -1.0, "val_loss": math.inf, "epoch": 0, "state": None}
    )
    last_val: dict = field(default_factory=dict)
    epoch_seconds: list = field(default_factory=list)
    epochs_run: int = 0
    diverged_at: dict | None = None


def fit(s: Setup, out_dir: Path) -> Fit:
    """Train epoch by epoch with early stopping; a non-finite training loss stops the run (Fit.diverged_at)."""
    hp, f, log = s.hp, Fit(), EpochLog(s, out_dir)
    best_monitor, stale = -math.inf, 0  # the early-stopping quantity, signed so that larger is better
    try:
        for epoch in range(1, hp["epochs"] + 1):
            lr = s.optimizer.param_groups[0]["lr"]
            train_loss, train_accuracy, seconds = train_epoch(s)
            f.epoch_seconds.append(seconds)
            f.epochs_run = epoch
            if not math.isfinite(train_loss):
                f.diverged_at = {"epoch": epoch}
                break
            if s.scheduler is not None:
                s.scheduler.step()
            val_loss, val_acc, _, _ = evaluate(s.model, s.val, hp["eval_batch_size"], s.autocast_dtype)
            row = dict(epoch=epoch, lr=lr, train_loss=train_loss, train_accuracy=train_accuracy)
            log.write(dict(row, val_loss=val_loss, val_accuracy=val_acc, epoch_seconds=seconds))
            if val_acc > f.best["val_accuracy"] or (
                val_acc == f.best["val_accuracy"] and val_loss < f.best["val_loss"]
            ):
                state = {k: v.detach().clone() for k, v in s.model.state_dict().items()}
                f.best.update(val_accuracy=val_acc, val_loss=val_loss, epoch=epoch, state=state)
            f.last_val = {"val_accuracy": val_acc, "val_loss": val_loss}
            monitor = val_acc if hp["early_stop_on"] == "val_accuracy" else -train_loss
            if monitor > best_monitor + hp["min_delta"]:
                best_monitor, stale = monitor, 0
            else:
                stale += 1
                if hp["patience"] and stale >= hp["patience"]:
                    break
    finally:
        log.close()
    return f


def training_values(hp: dict) -> dict:
    return {key: hp[key] for key in DEFAULTS}


def effective_hyperparameters(s: Setup) -> dict:
    """What metrics.json records: the training values, the cell fields, and what the device decided."""
    hp = s.hp
    effective = {**training_values(hp), "backbone": hp["backbone"], "head": hp["head"], "seed": hp["seed"]}
    effective["device"] = str(s.device)
    effective["harmonic_exponent"] = hp["head"].get("n") if hp["head"].get("distance") != "baseline" else None
    effective["autocast"] = str(s.autocast_dtype).replace("torch.", "") if s.autocast_dtype else "float32"
    effective["channels_last_used"] = s.channels_last
    return effective


def timing(s: Setup, f: Fit) -> dict:
    """Seconds per epoch (with torch.compile the first epoch includes compilation: reported apart, not averaged)."""
    steady = f.epoch_seconds[1:] if s.compiled and len(f.epoch_seconds) > 1 else f.epoch_seconds
    return {
        "epochs_run": f.epochs_run,
        "seconds_per_epoch": float(np.mean(steady)) if steady else float("nan"),
        "first_epoch_seconds": f.epoch_seconds[0] if f.epoch_seconds else None,
        "gflops_per_epoch": s.gflops_per_epoch,
        "n_train": len(s.train),
    }


def finish(s: Setup, f: Fit, out_dir: Path) -> Trained:
    """Test the final, then the selected checkpoint once each; PCA of the selected model's penultimate features."""
    from harmonic.metrics import classification_scores, pca_summary

    hp, effective, times = s.hp, effective_hyperparameters(s), timing(s, f)
    if f.diverged_at is not None:
        return Trained(metrics=times, hyperparameters=effective, diverged_at=f.diverged_at, files=placeholders(hp))
    y_test, num_classes = s.arrays["y_test"], s.meta["num_classes"]
    _, _, final_pred, _ = evaluate(s.model, s.test, hp["eval_batch_size"], s.autocast_dtype)
    final_scores = classification_scores(y_test, final_pred, num_classes)
    if hp["select"] == "best_val":
        s.model.load_state_dict(f.best["state"])
    n_pca = len(s.test) if hp["pca_samples"] in (None, 0) else min(int(hp["pca_samples"]), len(s.test))
    test_loss, _, pred, features = evaluate(s.model, s.test, hp["eval_batch_size"], s.autocast_dtype, n_pca)
    pca = pca_summary(features, standardize=True, k=10)
    metrics = {f"test_{k}": v for k, v in classification_scores(y_test, pred, num_classes).items()}
    metrics.update({f"test_final_{k}": v for k, v in final_scores.items()})
    metrics.update(test_loss=test_loss, **selected_validation(hp, f), **run_numbers(s, f, times), pca_samples=n_pca)
    metrics.update({f"pca_{k}": v for k, v in pca.items() if np.isscalar(v)})
    if hp["save_weights"]:
        from .weights import save_weight_study

        always_zero = (s.arrays["x_train"][s.train_idx] == 0).all(axis=0).reshape(-1)
        metrics.update(
            save_weight_study(s.model.head, always_zero, s.meta["image_shape"], hp["weight_taus"], out_dir)
        )
    shown = ("test_accuracy", "test_f1_macro", "seconds_per_epoch", "pca_n_pcs_90")
    return Trained(
        metrics=metrics,
        files={"pca.json": {"ev": pca.get("ev")}},
        hyperparameters=effective,
        summary={key: metrics.get(key) for key in shown},
    )


def selected_validation(hp: dict, f: Fit) -> dict:
    """Validation numbers and epoch of the checkpoint the test metrics use."""
    values = f.last_val if hp["select"] == "final" else {k: f.best[k] for k in ("val_accuracy", "val_loss")}
    return {**values, "best_epoch": f.best["epoch"] if hp["select"] == "best_val" else f.epochs_run}


def run_numbers(s: Setup, f: Fit, times: dict) -> dict:
    """Epochs, timings and sizes of the run."""
    seconds, gflops = times["seconds_per_epoch"], s.gflops_per_epoch
    return {
        "epochs_run": f.epochs_run,
        "stopped_early": f.epochs_run < s.hp["epochs"],
        "seconds_per_epoch": seconds,
        "first_epoch_seconds": f.epoch_seconds[0],
        "compiled": s.compiled,
        "train_seconds": float(np.sum(f.epoch_seconds)),
        "images_per_second": len(s.train) / seconds,
        "gflops_per_epoch": gflops,
        "seconds_per_epoch_per_gflop": seconds / gflops if gflops else None,
        "n_train": len(s.train),
        "n_val": len(s.val),
        "n_test": len(s.test),
    }


def train_cell(hp: dict, ctx) -> Trained:
    """The vision family's train function for harmonic.cell: setup, fit, finish."""
    s = setup(hp, ctx)
    return finish(s, fit(s, ctx.out_dir), ctx.out_dir)


def placeholders(hp) -> dict:
    """pca.json of a cell without a PCA (diverged or failed)."""
    return {"pca.json": {"ev": None}}


def check_data(hp: dict, ctx) -> dict:
    """data.npz checked against the sha256 its meta.json recorded; the record metrics.json keeps."""
    data_dir = Path(ctx.inputs["data_dir"])
    meta = json.loads((data_dir / "meta.json").read_text())
    return verified_data(data_dir, {"data.npz": meta["sha256"]})


def identity(hp: dict, data_dir: str | Path = "") -> dict:
    """A cell's identity when run by hand (the workflow passes its own): the dataset is the data folder's name."""
    return {
        "dataset": Path(data_dir).name,
        "model": hp["backbone"],
        "head": head_label(hp["head"]),
        "seed": hp["seed"],
    }


FAMILY = Family(
    name="vision",
    outputs=OUTPUTS,
    resolve=resolve,
    train=train_cell,
    identity=identity,
    check_data=check_data,
    placeholders=placeholders,
)
