"""Training loop for one language-model cell (nanoGPT-style): setup, fit, finish.

    result = train(resolve_config({...}), "results/llm/corrected/shakespeare/gpt/euclidean/seed0")

AdamW (fused on CUDA), linear warmup + cosine decay, gradient clipping, gradient accumulation so that the tokens per
step are fixed by the config whatever the number of processes, bf16 autocast on CUDA, optional torch.compile, DDP
when started by torchrun (NCCL on GPUs, gloo on CPU).

`setup` builds everything a run needs (resuming from ckpt.pt when its hyperparameters match, checkpoint.py), `fit`
runs the steps (evaluating, logging and checkpointing every eval_interval; telemetry.py), `finish` turns the loop
state into metrics. `on_step(step, run)` is called before every optimizer step; it may raise (a simulated kill) or
change the run (a simulated blow-up). A NaN/Inf loss or gradient norm stops the run with status "diverged".
"""

import contextlib
import math
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from harmonic.cell import CellContext, Family, Trained, emissions_meter
from harmonic.llm.bins import checked_token_data
from harmonic.llm.checkpoint import CHECKPOINT_NAME, add_emissions, fresh_state, load_checkpoint, save_checkpoint
from harmonic.llm.config import accumulation, block_size, config_fingerprint, lr_at, make_optimizer, resolve_config
from harmonic.llm.data import TRAIN_EVAL_STREAM, TRAIN_STREAM, VAL_STREAM, BatchSource, TokenBins
from harmonic.llm.models import build_model, lm_head_spec, special_tokens
from harmonic.llm.probe import probe_micro_batch, probed_micro_batch
from harmonic.llm.telemetry import Loggers, final_metrics, optimizer_norms, peak_flops, throughput, write_csv
from harmonic.runs import resolve_device, seed_everything

OUTPUTS = ("metrics.json", "curves.csv", "emissions.csv")  # rules/llm.smk declares these; all exist whatever happens


@dataclass
class Run:
    """Everything one training run holds; `state` is what a checkpoint saves and restores."""

    cfg: dict
    out_dir: Path
    rank: int
    world: int
    device: torch.device
    source: BatchSource
    accum: int
    raw_model: torch.nn.Module  # eval needs labelled_hidden / head, and no DDP synchronisation
    model: torch.nn.Module  # compiled and/or DDP-wrapped for the training steps
    optimizer: torch.optim.Optimizer
    autocast: torch.autocast
    scaler: torch.amp.GradScaler
    fingerprint: str
    hyperparameters: dict
    state: dict = field(default_factory=fresh_state)
    resumed: bool = False

    @property
    def master(self) -> bool:
        return self.rank == 0

    @property
    def checkpoint(self) -> Path:
        return self.out_dir / CHECKPOINT_NAME


def setup_distributed(device_spec: str) -> tuple[int, int, torch.device]:
    """(rank, world_size, device); initialises the process group when run under torchrun."""
    if "RANK" not in os.environ:
        return 0, 1, resolve_device(device_spec)
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    device = resolve_device(device_spec)
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def _to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _micro_batch(cfg: dict, given: int | None, device: torch.device, world: int) -> int:
    """The probe's answer when given; with micro_batch "auto" and no answer, probe here; else the configured one."""
    if given is None and cfg["micro_batch"] == "auto":
        given = probe_micro_batch({**cfg, "device": str(device)}, world)["micro_batch"]
    return int(given or cfg["micro_batch"])


def setup(cfg: dict, out_dir: str | os.PathLike, micro_batch: int | None = None) -> Run:
    """Data, model, optimizer and precision for `cfg`, resumed from the cell's checkpoint when it matches."""
    cfg = resolve_config(cfg)
    out_dir = Path(out_dir)
    rank, world, device = setup_distributed(cfg["device"])
    if rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
    micro_batch = _micro_batch(cfg, micro_batch, device, world)
    accum = accumulation(cfg, micro_batch, world)
    bins = TokenBins(cfg["data_dir"], vocab_limit=cfg["vocab_limit"])
    special = special_tokens(bins.vocab_size) | {"mask_probability": cfg["mask_probability"]}
    source = BatchSource(bins, cfg["model"], block_size(cfg), micro_batch, cfg["seed"], special)

    seed_everything(cfg["seed"])
    model = build_model(
        cfg["model"],
        cfg["model_args"],
        cfg["head"],
        bins.vocab_size,
        cfg["head_kernel"],
        label_smoothing=cfg["label_smoothing"],
        prob_floor=cfg["prob_floor"],
    ).to(device)
    optimizer = make_optimizer(model, cfg, device)
    use_amp = device.type == "cuda" and cfg["dtype"] != "float32"
    fingerprint = config_fingerprint(cfg)
    state = load_checkpoint(out_dir / CHECKPOINT_NAME, model, optimizer, fingerprint, device)
    wrapped = torch.compile(model) if cfg["compile"] else model
    if world > 1:
        wrapped = torch.nn.parallel.DistributedDataParallel(
            wrapped, device_ids=[device.index] if device.type == "cuda" else None
        )
    head = lm_head_spec(cfg["head"], cfg["model_args"].get("n_embd", 768))
    hyperparameters = {
        **{k: v for k, v in cfg.items() if k not in ("wandb",)},
        "head": head,
        "harmonic_exponent": head.get("n"),
        "micro_batch": micro_batch,
        "grad_accumulation": accum,
        "world_size": world,
        "n_params": sum(p.numel() for p in model.parameters()),
        "vocab_rows": model.body.embedding.num_embeddings,
    }
    return Run(
        cfg=cfg,
        out_dir=out_dir,
        rank=rank,
        world=world,
        device=device,
        source=source,
        accum=accum,
        raw_model=model,
        model=wrapped,
        optimizer=optimizer,
        autocast=torch.autocast(device.type, dtype=getattr(torch, cfg["dtype"]), enabled=use_amp),
        scaler=torch.amp.GradScaler(enabled=use_amp and cfg["dtype"] == "float16"),
        fingerprint=fingerprint,
        hyperparameters=hyperparameters,
        state=state if state is not None else fresh_state(),
        resumed=state is not None,
    )


@torch.no_grad()
def evaluate(model, source, cfg, device, autocast, rank, world, rows_per_chunk=4096) -> dict:
    """Mean loss, perplexity and accuracy on fixed batches of train and val (the same batches at every eval)."""
    model.eval()
    out = {}
    for split, stream in (("train", TRAIN_EVAL_STREAM), ("val", VAL_STREAM)):
        totals = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, count
        for i in range(rank, cfg["eval_iters"], world):
            batch = _to(source.micro(split, stream, 0, i, cfg["eval_iters"]), device)
            with autocast:
                x, y = model.labelled_hidden(batch)
            for start in range(0, len(y), rows_per_chunk):
                with autocast:
                    logits = model.head(x[start : start + rows_per_chunk]).float()
                target = y[start : start + rows_per_chunk]
                totals[0] += F.cross_entropy(logits, target, reduction="sum").double()
                totals[1] += (logits.argmax(-1) == target).sum()
                totals[2] += len(target)
        if world > 1:
            dist.all_reduce(totals)
        loss = (totals[0] / totals[2]).item()
        out[f"{split}_loss"] = loss
        out[f"{split}_ppl"] = math.exp(loss) if loss < 700 else float("inf")
        out[f"{split}_accuracy"] = (totals[1] / totals[2]).item()
    model.train()
    return out


def _evaluate_and_checkpoint(run: Run, step: int, elapsed: float, interval_steps: int, meter, loggers) -> None:
    """One row of curves.csv (losses, throughput, emissions so far), logged; rank 0 writes the CSVs and ckpt.pt."""
    cfg = run.cfg
    run.state["train_time"] += elapsed
    row = {"step": step, "tokens": step * cfg["tokens_per_step"], "lr": lr_at(max(step - 1, 0), cfg)}
    row |= evaluate(run.raw_model, run.source, cfg, run.device, run.autocast, run.rank, run.world)
    flops = run.raw_model.flops_per_token()
    row |= throughput(interval_steps, cfg["tokens_per_step"], elapsed, flops, peak_flops(run.device), run.world)
    if run.master:
        emissions_now = add_emissions(run.state["emissions"], meter.flush())
        row["emissions_kg"] = emissions_now.get("emissions_kg")
        row["energy_kwh"] = emissions_now.get("energy_kwh")
    run.state["curves"].append(row)
    if run.master:
        loggers.log({f"eval/{k}": v for k, v in row.items() if k != "step"}, step)
        write_csv(run.out_dir / "curves.csv", run.state["curves"])
        write_csv(run.out_dir / "grad_stats.csv", run.state["stats"])
        save_checkpoint(run.checkpoint, run.raw_model, run.optimizer, step, run.state, emissions_now, run.fingerprint)
        print(f"step {step}: train {row['train_loss']:.4f} val {row['val_loss']:.4f}", flush=True)


def _optimizer_step(run: Run, step: int) -> tuple[float, float, float]:
    """One optimizer step over `accum` micro-batches; (lr, mean loss, pre-clip gradient norm). The parameters are
    not updated when the loss or the norm is not finite."""
    cfg, device, accum, world = run.cfg, run.device, run.accum, run.world
    lr = lr_at(step, cfg)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    loss_sum = torch.zeros((), device=device)
    for micro in range(accum):
        batch = _to(run.source.micro("train", TRAIN_STREAM, step, run.rank * accum + micro, world * accum), device)
        sync = world == 1 or micro == accum - 1
        with contextlib.nullcontext() if sync else run.model.no_sync():
            with run.autocast:
                loss = run.model(batch) / accum
            run.scaler.scale(loss).backward()
        loss_sum += loss.detach().float()
    if world > 1:
        dist.all_reduce(loss_sum, op=dist.ReduceOp.AVG)
    run.scaler.unscale_(run.optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(run.raw_model.parameters(), cfg["grad_clip"])
    loss_value, norm_value = torch.stack([loss_sum, grad_norm.float()]).tolist()  # one sync per step
    if math.isfinite(loss_value) and math.isfinite(norm_value):
        run.scaler.step(run.optimizer)
        run.scaler.update()
        run.optimizer.zero_grad(set_to_none=True)
    return lr, loss_value, norm_value


def _record_step(run: Run, step: int, lr: float, loss: float, grad_norm: float, loggers) -> None:
    """The gradient norm of every step; the full statistics every stats_interval steps."""
    run.state["grad_norms"].append(grad_norm)
    if step % run.cfg["stats_interval"] == 0:
        stats = {
            "step": step,
            "loss": loss,
            "grad_norm": grad_norm,
            "lr": lr,
            "clipped": grad_norm > run.cfg["grad_clip"],
        }
        stats |= optimizer_norms(run.raw_model, run.optimizer)
        run.state["stats"].append(stats)
        if run.master:
            loggers.log({f"train/{k}": v for k, v in stats.items() if k != "step"}, step)


def fit(run: Run, meter, on_step=None) -> dict | None:
    """Train from the run's step to max_steps under an entered emissions `meter`, evaluating and checkpointing every
    eval_interval (skipped right after a resume: the checkpoint holds that eval). Returns None, or {step, loss,
    grad_norm} where it diverged."""
    cfg, start_step = run.cfg, run.state["step"]
    loggers = Loggers(cfg, run.out_dir, run.master)
    if run.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(run.device)
    previous_handler = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    step = start_step
    try:
        interval_start, interval_steps = time.perf_counter(), 0
        while True:
            if (step % cfg["eval_interval"] == 0 or step == cfg["max_steps"]) and not (
                run.resumed and step == start_step
            ):
                if run.device.type == "cuda":
                    torch.cuda.synchronize(run.device)
                elapsed = time.perf_counter() - interval_start
                _evaluate_and_checkpoint(run, step, elapsed, interval_steps, meter, loggers)
                interval_start, interval_steps = time.perf_counter(), 0
            if step >= cfg["max_steps"]:
                return None
            if on_step is not None:
                on_step(step, run)
            lr, loss, grad_norm = _optimizer_step(run, step)
            if not (math.isfinite(loss) and math.isfinite(grad_norm)):
                return {"step": step, "loss": loss, "grad_norm": grad_norm}
            _record_step(run, step, lr, loss, grad_norm, loggers)
            step += 1
            run.state["step"] = step
            interval_steps += 1
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
        loggers.close()


def finish(run: Run, diverged_at: dict | None) -> Trained:
    """Rank 0: grad_stats.csv and the metrics (plus the model analysis when the run did not diverge)."""
    if not run.master:
        return Trained(hyperparameters=run.hyperparameters, device=str(run.device))
    write_csv(run.out_dir / "grad_stats.csv", run.state["stats"])
    metrics = final_metrics(run.state, run.cfg, run.device)
    if diverged_at is None and run.cfg["analysis"]["enabled"]:
        from harmonic.llm.analysis import analyse_model

        metrics |= analyse_model(run.raw_model, run.source, run.cfg, run.device, run.autocast, run.out_dir)
    return Trained(
        metrics=metrics,
        hyperparameters=run.hyperparameters,
        diverged_at=diverged_at,
        summary={k: metrics.get(k) for k in ("val_loss", "val_ppl")},
        device=str(run.device),
    )


def train_cell(hp: dict, ctx: CellContext, on_step=None) -> Trained:
    """The LLM family's train function for the cell contract (harmonic.cell): the memory probe's micro-batch from
    ctx.inputs["probe"] when micro_batch is auto, then setup, fit under the contract's meter, finish."""
    micro_batch = probed_micro_batch(ctx.inputs.get("probe")) if hp["micro_batch"] == "auto" else None
    run = setup(hp, ctx.out_dir, micro_batch)
    trained = finish(run, fit(run, ctx.meter, on_step))
    if run.resumed:  # the earlier attempts' emissions (from the checkpoint) plus this attempt's so far
        trained.emissions = add_emissions(run.state["emissions"], ctx.meter.flush())
    return trained


def train(cfg: dict, out_dir: str | os.PathLike, micro_batch: int | None = None, on_step=None) -> Trained:
    """One cell outside the contract (tests, notebooks): setup, fit and finish under a meter of its own; nothing but
    the streamed files (curves, checkpoint) is written. `on_step(step, run)` runs before every optimizer step."""
    run = setup(cfg, out_dir, micro_batch)
    with emissions_meter(run.out_dir, run.cfg["emissions"]) as meter:
        diverged_at = fit(run, meter, on_step)
    trained = finish(run, diverged_at)
    trained.emissions = add_emissions(run.state["emissions"], meter.summary)
    return trained


def identity(hp: dict) -> dict:
    """A cell run by hand (no --cell-json): named by its data directory, model, head distance and seed."""
    head = hp["head"]["distance"] if isinstance(hp["head"], dict) else hp["head"]
    return {"dataset": Path(hp["data_dir"]).name, "model": hp["model"], "head": head, "seed": hp["seed"]}


FAMILY = Family(
    name="llm",
    outputs=OUTPUTS,
    resolve=resolve_config,
    train=train_cell,
    identity=identity,
    check_data=lambda hp, ctx: checked_token_data(hp["data_dir"]),
)


def _exit_on_sigterm(signum, frame):
    # SystemExit unwinds through `finally` blocks (the emissions meter closes) and is not caught as a failure, so
    # the job exits non-zero without metrics.json and the scheduler's rerun resumes from ckpt.pt.
    raise SystemExit(128 + signum)
