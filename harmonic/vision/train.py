"""Train and evaluate one vision cell: (dataset, backbone, head, seed) -> metrics.json, curves.csv, emissions.csv.

Read top to bottom: build the data on the device, build the model, measure FLOPs of one step, train with early stopping
on the validation split, evaluate the selected (best validation) and the final checkpoint on the test set once each,
PCA of the selected model's penultimate features, write everything. metrics.json is written last.

Hyperparameters (resolved by grid.py; defaults below):
    optimizer adam|adamw|sgd, lr, weight_decay, momentum (sgd), nesterov
    schedule none|step|multistep|cosine, step_size, gamma, milestones, min_lr
    epochs, batch_size, eval_batch_size, patience (epochs without improvement before stopping; 0 = off),
    early_stop_on val_accuracy|train_loss (what must improve by more than min_delta), select best_val|final (which
    checkpoint the test_* metrics and the PCA use; test_final_* is always the final one)
    augment (flip + shift 4 + rotation, on the device), val_fraction, val_split_seed, pca_samples
    normalize (per-channel mean/std of the training set; false = ToTensor scaling to [0, 1] only, so blank pixels
    are 0), init_std (null = the module's init; else the head's weight ~ N(0, init_std), as both original MNIST
    weight studies), train_metric (false freezes a mahalanobis head's metric, the original's learn_cov=False)
    regularizer (null or a distance-family name) and regularizer_lambda: loss + lambda * R(features), default off
    amp auto|bf16|none (bf16 autocast for the backbone on CUDA; the head always runs in float32),
    compile (torch.compile on CUDA), channels_last auto|true|false, tensorboard, wandb, wandb_project
"""

from __future__ import annotations

import copy
import csv
import math
import time
import traceback
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from harmonic.runs import atomic_write_json, write_metrics
from harmonic.settings import SETTINGS

from .backbones import CONV_BACKBONES, build_model
from .data import DeviceSplit, augment_batch, load_prepared, split_train_val

DEFAULTS = {
    "optimizer": "adam",
    "lr": 3e-4,
    "weight_decay": 0.0,
    "momentum": 0.9,
    "nesterov": False,
    "schedule": "none",
    "step_size": 30,
    "gamma": 0.1,
    "milestones": [],
    "min_lr": 1e-6,
    "epochs": 3,
    "batch_size": 128,
    "eval_batch_size": 1024,
    "patience": 15,
    "early_stop_on": "val_accuracy",
    "min_delta": 0.0,
    "select": "best_val",
    "normalize": True,
    "init_std": None,
    "train_metric": True,
    "setting": "corrected",
    "augment": False,
    "val_fraction": 0.1,
    "val_split_seed": 0,
    "pca_samples": 2000,
    "regularizer": None,
    "regularizer_lambda": 0.0,
    "amp": "auto",
    "compile": False,
    "channels_last": "auto",
    "tensorboard": False,
    "wandb": False,
    "wandb_project": "harmonic-repro",
    "save_weights": False,
    "weight_taus": [0.001, 0.01, 0.1],
}


def resolve_hyperparameters(hyper: dict) -> dict:
    """Fill defaults and reject unknown keys or bad values before any data or model is built."""
    unknown = sorted(set(hyper) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"unknown vision hyperparameters {unknown}; known: {sorted(DEFAULTS)}")
    hp = {**copy.deepcopy(DEFAULTS), **hyper}
    if hp["optimizer"] not in ("adam", "adamw", "sgd"):
        raise ValueError(f"optimizer must be adam, adamw or sgd, got {hp['optimizer']!r}")
    if hp["schedule"] not in ("none", "step", "multistep", "cosine"):
        raise ValueError(f"schedule must be none, step, multistep or cosine, got {hp['schedule']!r}")
    if hp["amp"] not in ("auto", "bf16", "none"):
        raise ValueError(f"amp must be auto, bf16 or none, got {hp['amp']!r}")
    if hp["early_stop_on"] not in ("val_accuracy", "train_loss"):
        raise ValueError(f"early_stop_on must be val_accuracy or train_loss, got {hp['early_stop_on']!r}")
    if hp["select"] not in ("best_val", "final"):
        raise ValueError(f"select must be best_val or final, got {hp['select']!r}")
    if hp["setting"] not in SETTINGS:
        raise ValueError(f"setting must be one of {SETTINGS}, got {hp['setting']!r}")
    if hp["init_std"] is not None and not float(hp["init_std"]) > 0:
        raise ValueError(f"init_std must be null or > 0, got {hp['init_std']!r}")
    if hp["save_weights"] and hp["normalize"]:
        # the score counts weights on always-zero pixels; normalised, those pixels arrive as -mean/std and the
        # harmonic centres are pulled there (Baek et al. used ToTensor inputs only)
        raise ValueError("save_weights (the weight study) needs normalize: false, so blank pixels arrive as 0")
    for key in ("epochs", "batch_size", "eval_batch_size"):
        if int(hp[key]) < 1:
            raise ValueError(f"{key} must be >= 1, got {hp[key]}")
    return hp


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


def _curves_writer(path: Path):
    f = open(path, "w", newline="")
    fields = ["epoch", "lr", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "epoch_seconds"]
    writer = csv.DictWriter(f, fieldnames=fields)
    writer.writeheader()
    return f, writer


def train_cell(
    *,
    data_dir: str | Path,
    out_dir: str | Path,
    backbone: str,
    head: dict,
    seed: int,
    hyper: dict,
    device: str = "auto",
    emissions: dict | None = None,
) -> dict:
    """Run one cell and return the fields for harmonic.runs.write_metrics (the caller writes metrics.json).

    A non-finite training loss stops the run: status "diverged" with the epoch; other exceptions propagate.
    """
    from harmonic.emissions import EmissionsMeter
    from harmonic.metrics import classification_scores, pca_summary
    from harmonic.runs import resolve_device, seed_everything

    hp = resolve_hyperparameters(hyper)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = torch.device(resolve_device(device))
    seed_everything(seed)
    on_cuda = dev.type == "cuda"
    if on_cuda:
        configure_cuda_math()
    autocast_dtype = torch.bfloat16 if on_cuda and hp["amp"] in ("auto", "bf16") else None
    channels_last = backbone in CONV_BACKBONES if hp["channels_last"] == "auto" else bool(hp["channels_last"])
    channels_last = channels_last and on_cuda
    reg = regularizer_fn(hp)

    # data: whole dataset on the device; validation carved from train with its own seed (same split for all heads)
    meta, arrays = load_prepared(data_dir)
    train_idx, val_idx = split_train_val(len(arrays["y_train"]), hp["val_fraction"], hp["val_split_seed"])
    mean, std = (meta["mean"], meta["std"]) if hp["normalize"] else ([0.0], [1.0])
    mk = lambda x, y: DeviceSplit(x, y, mean, std, dev, channels_last)  # noqa: E731
    train = mk(arrays["x_train"][train_idx], arrays["y_train"][train_idx])
    val = mk(arrays["x_train"][val_idx], arrays["y_train"][val_idx])
    test = mk(arrays["x_test"], arrays["y_test"])
    num_classes = meta["num_classes"]

    model = build_model(backbone, head, meta["image_shape"], num_classes)
    init_head_weight(model.head, hp["init_std"])
    if not hp["train_metric"]:
        for name in ("factor_raw", "log_diagonal"):
            if hasattr(model.head, name):
                getattr(model.head, name).requires_grad_(False)
    model = model.to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad], hp)
    scheduler = make_scheduler(optimizer, hp)
    generator = torch.Generator().manual_seed(seed)

    x0, y0 = next(train.batches(hp["batch_size"]))
    step_flops = train_step_flops(model, x0, y0, autocast_dtype)
    gflops_per_epoch = step_flops / len(y0) * len(train) / 1e9
    if hp["compile"] and on_cuda:
        model.backbone = torch.compile(model.backbone)

    tb = wandb_run = None
    if hp["tensorboard"]:
        from torch.utils.tensorboard import SummaryWriter

        tb = SummaryWriter(str(out_dir / "tensorboard"))
    if hp["wandb"]:
        import wandb  # optional; only imported when switched on

        wandb_run = wandb.init(
            project=hp["wandb_project"],
            name=f"{meta['name']}/{backbone}/{head.get('distance')}/seed{seed}",
            config={"backbone": backbone, "head": head, **hp},
            dir=str(out_dir),
            reinit=True,
        )

    curves_file, curves = _curves_writer(out_dir / "curves.csv")
    best = {"val_accuracy": -1.0, "val_loss": math.inf, "epoch": 0, "state": None}
    last_val = {}
    best_monitor = -math.inf  # the early-stopping quantity, signed so that larger is better
    epoch_seconds, epochs_run, stale, diverged_at = [], 0, 0, None
    emissions_cfg = emissions or {}
    meter = EmissionsMeter(
        output_csv=out_dir / "emissions.csv",
        country_iso_code=emissions_cfg.get("country_iso_code", "USA"),
        measure_power_secs=emissions_cfg.get("measure_power_secs", 15),
        enabled=emissions_cfg.get("enabled", True),
    )
    try:
        with meter:
            for epoch in range(1, hp["epochs"] + 1):
                lr = optimizer.param_groups[0]["lr"]
                if on_cuda:
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                loss_sum = torch.zeros((), device=dev)
                correct = torch.zeros((), device=dev)
                for x, y in train.batches(hp["batch_size"], shuffle=True, generator=generator):
                    if hp["augment"]:
                        x = augment_batch(x, generator)
                    logits, features = model(x, autocast_dtype)
                    loss = F.cross_entropy(logits, y)
                    if reg is not None:
                        loss = loss + reg(features)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    loss_sum += loss.detach() * len(y)
                    correct += (logits.detach().argmax(1) == y).sum()
                train_loss = loss_sum.item() / len(train)  # one host sync per epoch
                if on_cuda:
                    torch.cuda.synchronize()
                epoch_seconds.append(time.perf_counter() - t0)
                epochs_run = epoch
                if not math.isfinite(train_loss):
                    diverged_at = {"epoch": epoch}
                    break
                if scheduler is not None:
                    scheduler.step()
                val_loss, val_acc, _, _ = evaluate(model, val, hp["eval_batch_size"], autocast_dtype)
                row = {
                    "epoch": epoch,
                    "lr": lr,
                    "train_loss": train_loss,
                    "train_accuracy": correct.item() / len(train),
                    "val_loss": val_loss,
                    "val_accuracy": val_acc,
                    "epoch_seconds": epoch_seconds[-1],
                }
                curves.writerow(row)
                curves_file.flush()
                if tb is not None:
                    for key, value in row.items():
                        if key != "epoch":
                            tb.add_scalar(key, value, epoch)
                if wandb_run is not None:
                    wandb_run.log(row)
                if val_acc > best["val_accuracy"] or (
                    val_acc == best["val_accuracy"] and val_loss < best["val_loss"]
                ):
                    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                    best.update(val_accuracy=val_acc, val_loss=val_loss, epoch=epoch, state=state)
                last_val = {"val_accuracy": val_acc, "val_loss": val_loss}
                monitor = val_acc if hp["early_stop_on"] == "val_accuracy" else -train_loss
                if monitor > best_monitor + hp["min_delta"]:
                    best_monitor, stale = monitor, 0
                else:
                    stale += 1
                    if hp["patience"] and stale >= hp["patience"]:
                        break
    finally:
        curves_file.close()
        if tb is not None:
            tb.close()
        if wandb_run is not None:
            wandb_run.finish()

    effective = {**hp, "backbone": backbone, "head": head, "seed": seed, "device": str(dev)}
    effective["harmonic_exponent"] = head.get("n") if head.get("distance") != "baseline" else None
    effective["autocast"] = str(autocast_dtype).replace("torch.", "") if autocast_dtype else "float32"
    effective["channels_last_used"] = channels_last
    # with torch.compile the first epoch includes compilation: it is reported apart, not averaged in
    compiled = bool(hp["compile"] and on_cuda)
    steady = epoch_seconds[1:] if compiled and len(epoch_seconds) > 1 else epoch_seconds
    seconds_per_epoch = float(np.mean(steady)) if steady else float("nan")
    timing = {
        "epochs_run": epochs_run,
        "seconds_per_epoch": seconds_per_epoch,
        "first_epoch_seconds": epoch_seconds[0] if epoch_seconds else None,
        "gflops_per_epoch": gflops_per_epoch,
        "n_train": len(train),
    }
    if diverged_at is not None:
        return {
            "status": "diverged",
            "diverged_at": diverged_at,
            "metrics": timing,
            "hyperparameters": effective,
            "emissions": meter.summary,
            "pca_ev": None,
        }

    # test: final checkpoint, then the selected one (best validation accuracy, or the final one for select: final)
    _, final_acc, final_pred, _ = evaluate(model, test, hp["eval_batch_size"], autocast_dtype)
    final_scores = classification_scores(arrays["y_test"], final_pred, num_classes)
    if hp["select"] == "best_val":
        model.load_state_dict(best["state"])
    n_pca = len(test) if hp["pca_samples"] in (None, 0) else min(int(hp["pca_samples"]), len(test))
    test_loss, _, pred, features = evaluate(model, test, hp["eval_batch_size"], autocast_dtype, keep_features=n_pca)
    scores = classification_scores(arrays["y_test"], pred, num_classes)
    pca = pca_summary(features, standardize=True, k=10)

    metrics = {f"test_{k}": v for k, v in scores.items()}
    metrics.update({f"test_final_{k}": v for k, v in final_scores.items()})
    metrics.update(
        {
            "test_loss": test_loss,
            **(last_val if hp["select"] == "final" else {k: best[k] for k in ("val_accuracy", "val_loss")}),
            "best_epoch": best["epoch"] if hp["select"] == "best_val" else epochs_run,
            "epochs_run": epochs_run,
            "stopped_early": epochs_run < hp["epochs"],
            "seconds_per_epoch": seconds_per_epoch,
            "first_epoch_seconds": epoch_seconds[0],
            "compiled": compiled,
            "train_seconds": float(np.sum(epoch_seconds)),
            "images_per_second": len(train) / seconds_per_epoch,
            "gflops_per_epoch": gflops_per_epoch,
            "seconds_per_epoch_per_gflop": seconds_per_epoch / gflops_per_epoch if gflops_per_epoch else None,
            "n_train": len(train),
            "n_val": len(val),
            "n_test": len(test),
            "pca_samples": n_pca,
        }
    )
    metrics.update({f"pca_{k}": v for k, v in pca.items() if np.isscalar(v)})
    if hp["save_weights"]:
        from .weights import save_weight_study

        always_zero = (arrays["x_train"][train_idx] == 0).all(axis=0).reshape(-1)
        metrics.update(save_weight_study(model.head, always_zero, meta["image_shape"], hp["weight_taus"], out_dir))

    return {
        "status": "ok",
        "diverged_at": None,
        "metrics": metrics,
        "hyperparameters": effective,
        "emissions": meter.summary,
        "pca_ev": pca.get("ev"),
    }


def run_and_record_cell(
    *, out_dir: Path, cell: dict, fallback_hyperparameters: dict, device, data: dict | None = None, **train_kwargs
) -> tuple[str, dict | None, Exception | None]:
    """Train one cell with train_cell and record it whatever happens: an ordinary exception is a "failed" result
    (SIGTERM / Ctrl-C propagate, so a scheduler reruns the cell). The declared outputs exist either way and
    metrics.json (with `data`, the checked data files' hashes) is written last.
    Returns (status, result or None, error or None)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    status, result, error = "ok", None, None
    try:
        result = train_cell(out_dir=out_dir, device=str(device), **train_kwargs)
        status = result["status"]
    except Exception as exc:
        traceback.print_exc()
        status, error = "failed", exc
    if result is None:  # keep the declared outputs present so the workflow can aggregate the failure
        for name in ("curves.csv", "emissions.csv"):
            if not (out_dir / name).exists():
                (out_dir / name).write_text("")
    atomic_write_json(out_dir / "pca.json", {"ev": result.get("pca_ev") if result else None})
    write_metrics(
        out_dir / "metrics.json",
        status=status,
        family="vision",
        cell=cell,
        hyperparameters=result["hyperparameters"] if result else fallback_hyperparameters,
        metrics=result["metrics"] if result else {},
        emissions=result["emissions"] if result else {},
        diverged_at=result["diverged_at"] if result else None,
        error=error,
        device=device,
        data=data,
    )
    return status, result, error
