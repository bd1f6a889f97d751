"""Train toy cells of one shape together: every tensor carries a leading cell dimension S.

Why: a toy cell is 175,000 optimizer steps of a ~5k-parameter model, so a step costs what the framework costs, not
what the arithmetic costs. Stacking cells turns S small steps into one step of the same number of kernels, and on
CUDA one epoch (all its steps and the full-split evaluation) is captured once as a CUDA graph and replayed.

How a group is trained (``ToyGroup``):
- each cell builds its model exactly as a lone run does (``torch.manual_seed(seed)`` then ``build_from_hp``); the
  parameters of all cells are copied into one flat (S, P) tensor, and ``torch.func.functional_call`` under
  ``torch.vmap`` runs the group's shared module on each cell's slice of it, so any model ``build_from_hp`` returns
  and every option of harmonic.toy.models plugs in unchanged;
- the loss is ``harmonic.toy.train.cell_loss`` per cell, summed over cells: the gradient of a sum is each cell's own
  gradient, untouched by the others;
- AdamW (torch.optim.AdamW's update, written on the flat tensors) takes per-cell learning rate, weight decay and
  step count; a cell with `decoder_lr` (the GenEFT study, harmonic/toy/geneft.py) has two parameter groups, its
  encoder at `lr` and its decoder at `decoder_lr`, so the learning rate is then a (S, P) tensor, one value per
  parameter of each cell (per element the same arithmetic, so equal rates give the one-group numbers bit for bit);
- cells may differ in seed, train fraction, epochs, lr, weight decay and penalty. Batches are always padded to
  batch_size rows (a short last batch has zero weights) and evaluation splits to n_samples rows, and a step or
  epoch a cell does not have leaves its parameters, moments and step count bit for bit as they were (torch.where).
  So a cell's numbers depend on its own hyperparameters only, never on which cells share its group
  (tests/toy/test_batched.py checks this bit for bit on CPU).
- a cell whose loss stops being finite is frozen where it was and marked diverged at that epoch, like a lone run.
- dropout (the original transformer, transformer: original) draws its masks under vmap(randomness="different"): one
  draw of shape (S, ...) from the device's generator per layer and step, so a cell's masks, and from there its
  numbers, depend on the group it ran in. Runs of the same group repeat exactly; alone and batched such cells are
  equal in distribution only.

Shuffling: every epoch each cell's train rows are sorted by a hash of (seed, epoch, row) (ToyGroup._shuffle), on the
device, so nothing is drawn on the host between epochs and a cell's order never depends on its group.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel

from harmonic.toy.datasets import make_dataset, overlap_fraction
from harmonic.toy.geneft import decoder_columns
from harmonic.toy.models import build_from_hp, penalised_embedding

# Hyperparameters that may differ between the cells of one group; every other key must be equal.
PER_CELL_KEYS = ("seed", "train_fraction", "epochs", "lr", "decoder_lr", "weight_decay", "embedding_penalty")
# Keys that name a cell or say where it runs, not what it computes (a setting or study changes a cell only
# through the values it sets).
RUNTIME_KEYS = ("device", "threads", "setting", "study")
BETAS, ADAM_EPS = (0.9, 0.999), 1e-8  # torch.optim.AdamW's defaults, which the per-cell loop used


def _int64(value):
    """An unsigned 64-bit constant as the signed int64 with the same bits."""
    return value - (1 << 64) if value >= 1 << 63 else value


# splitmix64's constants: the shuffle's hash of (seed, epoch, row)
_GOLDEN, _MIX1, _MIX2 = _int64(0x9E3779B97F4A7C15), _int64(0xBF58476D1CE4E5B9), _int64(0x94D049BB133111EB)
CURVE_FIELDS = ("train_loss", "train_acc", "test_loss", "test_acc")


def group_key(hp):
    """Cells with the same key can share one ToyGroup."""
    shared = {k: v for k, v in hp.items() if k not in PER_CELL_KEYS + RUNTIME_KEYS}
    return repr(sorted(shared.items()))


def _padded(rows, length):
    """rows (N, ...) padded with zeros (token 0, a valid index) to `length` rows."""
    out = np.zeros((length, *rows.shape[1:]), dtype=np.int64)
    out[: len(rows)] = rows
    return out


def _progress(epoch, rows):
    """One log line: every cell's train and test loss and accuracy (rows: S lists in CURVE_FIELDS order)."""
    values = [" ".join(f"{row[i]:.3f}" for row in rows) for i in range(len(CURVE_FIELDS))]
    return f"epoch {epoch}: train loss {values[0]} acc {values[1]} | test loss {values[2]} acc {values[3]}"


class _Objective(nn.Module):
    """A cell's model and training objective in one module, so that functional_call gives both the cell's own
    parameters (the penalty reads the embedding through harmonic.toy.models.penalised_embedding)."""

    def __init__(self, model, hp, loss_fn):
        super().__init__()
        self.model, self.hp, self.loss_fn = model, hp, loss_fn

    def forward(self, x, y, weight, penalty):
        return self.loss_fn(self.model(x), y, weight, penalised_embedding(self.model, self.hp), penalty)


class _StepState(NamedTuple):
    """The tensors an optimizer step reads and writes (the group's own attributes of the same names)."""

    flat: torch.Tensor
    exp_avg: torch.Tensor
    exp_avg_sq: torch.Tensor
    step_count: torch.Tensor
    lr: torch.Tensor
    weight_decay: torch.Tensor
    penalty: torch.Tensor
    order: torch.Tensor
    order_weight: torch.Tensor
    x_train: torch.Tensor
    y_train: torch.Tensor
    cell_steps: torch.Tensor
    epoch: torch.Tensor
    epochs: torch.Tensor
    alive: torch.Tensor
    diverged_epoch: torch.Tensor


def _unflat(flat, layout):
    """(S, *shape) views of the flat (S, P) parameters by name; layout: (name, offset, shape) per parameter."""
    return {name: flat[:, offset : offset + math.prod(shape)].unflatten(1, shape) for name, offset, shape in layout}


def _compiled(fn):
    """fn(*tensors) compiled on its first call: traced into an aten graph (make_fx, on fake tensors, so nothing runs)
    that inductor compiles as torch.compile's backend compiles the graphs it captures. Later calls run the compiled
    graph directly: no dynamo frame and no guards (on the CPU those cost more than a toy step's kernels). That is
    sound because every tensor fn uses is an argument, always the same tensors of the group (fixed shapes), and all
    else it reads (the module, its options, the layout) belongs to the group and is fixed when it is built.

    The CPU kernels are single-threaded (cpp.threads 1): with more threads inductor splits a reduction over threads
    by its shape, so a cell's sums would be rounded differently alone and in a group (tests/toy/test_batched.py).
    """
    graph = None

    def call(*args):
        nonlocal graph
        if graph is None:
            from torch._inductor.compile_fx import compile_fx  # a heavy import the eager path does not need
            from torch.fx.experimental.proxy_tensor import make_fx

            traced = make_fx(lambda *a: fn(*a), tracing_mode="fake")(*args)
            graph = compile_fx(traced, list(args), config_patches={"cpp.threads": 1})
        graph(*args)

    return call


class ToyGroup:
    """S toy cells with equal group_key, trained in lock-step. ``run()`` returns one ToyResult per cell."""

    def __init__(self, hps, device="cpu", loss_fn=None, compile=False):
        from harmonic.toy.train import ToyResult, cell_loss  # the objective lives with the entry points

        if len({group_key(hp) for hp in hps}) != 1:
            raise ValueError("ToyGroup: cells differ in a hyperparameter other than " + ", ".join(PER_CELL_KEYS))
        self.hps, self.device = list(hps), torch.device(device)
        self.loss_fn = loss_fn or cell_loss
        hp0 = self.hps[0]
        self.batch_size = int(hp0["batch_size"])

        data = [
            make_dataset(
                hp["task"],
                seed=hp["seed"],
                split=hp["split"],
                n_samples=hp["n_samples"],
                train_fraction=hp["train_fraction"],
            )
            for hp in self.hps
        ]
        self.results = [
            ToyResult(overlap_fraction=overlap_fraction(d), n_train=len(d.y_train), n_test=len(d.y_test))
            for d in data
        ]
        self.n_train = [len(d.y_train) for d in data]
        # Splits are padded to n_samples rows, batches to batch_size rows: lengths set by values the whole group
        # shares, so a cell's reductions have the same shapes in any group.
        rows = int(hp0["n_samples"])
        self.steps = [math.ceil(n / self.batch_size) for n in self.n_train]
        self.max_steps = max(self.steps)

        self._init_parameters(data)
        self._init_per_cell_values()
        weight = self._init_state(data, rows)
        self.graph = None
        self.order_weight.copy_(torch.from_numpy(weight))
        if self.device.type == "cuda":
            self.stream = torch.cuda.Stream(self.device)
        self.epochs_done = 0
        self.compiled = compile
        self._init_calls(rows)

    def _init_calls(self, rows):
        """The step and the evaluation, and the tensors passed to them as arguments. Compiled: fewer kernels and a
        fraction of the framework time per step (other float rounding than the eager path's)."""
        b, dev = self.batch_size, self.device
        # step k's number and its batch's positions in the epoch's order, as tensors
        self.step_numbers = [torch.tensor(k, device=dev) for k in range(self.max_steps)]
        self.batch_columns = [torch.arange(k * b, (k + 1) * b, device=dev) for k in range(self.max_steps)]
        self.state = _StepState(**{name: getattr(self, name) for name in _StepState._fields})
        self.evaluation_rows = torch.zeros(len(self.hps), len(CURVE_FIELDS), rows, device=dev)
        self.evaluation_mask = torch.stack([self.train_mask, self.train_mask, self.test_mask, self.test_mask], dim=1)
        self.evaluation_state = (
            self.flat,
            self.evaluation_rows,
            self.x_train,
            self.y_train,
            self.x_test,
            self.y_test,
        )
        self._step = _compiled(self._optimizer_step) if self.compiled else self._optimizer_step
        self._evaluate_splits = _compiled(self._evaluation) if self.compiled else self._evaluation

    def _init_parameters(self, data):
        """Every cell's model built from its seed, all parameters in one (S, P) tensor, AdamW state beside it."""
        hp0, S = self.hps[0], len(self.hps)
        models = []
        for hp, d in zip(self.hps, data):
            torch.manual_seed(hp["seed"])
            models.append(build_from_hp(hp, d.vocab_size, d.x_train.shape[1]))
        self.model = models[0].to(self.device)
        self.objective = _Objective(self.model, hp0, self.loss_fn)
        if list(self.model.buffers()):
            raise ValueError("ToyGroup: models with buffers are not supported")
        dev = self.device
        # All parameters of a cell in one row of `flat` (S, P), so AdamW is a few kernels whatever the model;
        # `params` holds (S, *shape) views of it by name. Tied parameters appear once (named_parameters dedups).
        named = [dict(m.named_parameters()) for m in models]
        self.flat = torch.stack([torch.cat([p.detach().cpu().reshape(-1) for p in n.values()]) for n in named]).to(
            dev
        )
        self.layout, offset = [], 0
        for name, p in named[0].items():
            self.layout.append((name, offset, tuple(p.shape)))
            offset += p.numel()
        self.layout = tuple(self.layout)
        self.params = _unflat(self.flat, self.layout)
        self.exp_avg = torch.zeros_like(self.flat)
        self.exp_avg_sq = torch.zeros_like(self.flat)
        self.n_parameters = self.flat.shape[1]
        for result in self.results:
            result.n_parameters = self.n_parameters
        self.step_count = torch.zeros(S, 1, device=dev)

    def _init_per_cell_values(self):
        """Per-cell learning rates (per parameter for GenEFT), weight decay, penalty, epochs and step counts."""
        dev = self.device

        def column(key):
            return torch.tensor([float(hp[key]) for hp in self.hps], device=dev)

        self.lr, self.weight_decay, self.penalty = (
            column("lr")[:, None],
            column("weight_decay")[:, None],
            column("embedding_penalty"),
        )
        if any("decoder_lr" in hp for hp in self.hps):  # GenEFT: encoder at lr, decoder at decoder_lr
            decoder = torch.tensor(decoder_columns(dict(self.model.named_parameters())), device=dev)
            decoder_lr = torch.tensor([float(hp.get("decoder_lr", hp["lr"])) for hp in self.hps], device=dev)
            self.lr = torch.where(decoder[None, :], decoder_lr[:, None], self.lr)
        self.epochs = torch.tensor([int(hp["epochs"]) for hp in self.hps], device=dev)
        self.cell_steps = torch.tensor(self.steps, device=dev)
        self.cell_n_train = torch.tensor(self.n_train, device=dev)
        self.max_epochs = max(int(hp["epochs"]) for hp in self.hps)

    def _init_state(self, data, rows):
        """The padded splits and their masks on the device, and the per-epoch state the captured steps read."""
        dev, S = self.device, len(self.hps)
        # Splits padded to `rows` examples; masks say which are real.
        self.x_train = torch.tensor(np.stack([_padded(d.x_train, rows) for d in data]), device=dev)
        self.y_train = torch.tensor(np.stack([_padded(d.y_train, rows) for d in data]), device=dev)
        self.x_test = torch.tensor(np.stack([_padded(d.x_test, rows) for d in data]), device=dev)
        self.y_test = torch.tensor(np.stack([_padded(d.y_test, rows) for d in data]), device=dev)
        arange = torch.arange(rows, device=dev)
        self.train_mask = (arange < torch.tensor(self.n_train, device=dev)[:, None]).float()
        self.test_mask = (arange < torch.tensor([len(d.y_test) for d in data], device=dev)[:, None]).float()

        # Per-epoch state the steps read: the shuffled order (padded) and its weights; the epoch counter.
        width = max(rows, self.max_steps * self.batch_size)
        self.order = torch.zeros(S, width, dtype=torch.long, device=dev)
        self.order_weight = torch.zeros(S, width, device=dev)
        self.seeds = torch.tensor([int(hp["seed"]) for hp in self.hps], device=dev)
        self.row_index = torch.arange(width, device=dev)
        self.epoch = torch.zeros((), dtype=torch.long, device=dev)
        self.alive = torch.ones(S, dtype=torch.bool, device=dev)
        self.diverged_epoch = torch.zeros(S, dtype=torch.long, device=dev)
        self.curves = torch.full((self.max_epochs, S, len(CURVE_FIELDS)), math.nan, device=dev)
        weight = np.zeros((S, width), dtype=np.float32)
        for s, n in enumerate(self.n_train):
            weight[s, :n] = 1.0
        return weight

    # ---- one cell's pieces, run under vmap -------------------------------------------------------------------

    def _cell_loss(self, params, x, y, weight, penalty):
        with sdpa_kernel(SDPBackend.MATH):  # plain matmul/softmax attention: vmap has rules for every op of it
            named = {f"model.{name}": p for name, p in params.items()}
            return functional_call(self.objective, named, (x, y, weight, penalty))

    def _cell_eval(self, params, x, y):
        """Per example: the loss and whether the prediction is right (2, rows)."""
        with sdpa_kernel(SDPBackend.MATH):
            logits = functional_call(self.model, params, (x,))
        losses = torch.nn.functional.cross_entropy(logits, y, reduction="none")
        return torch.stack([losses, (logits.argmax(-1) == y).float()])

    # ---- the group's step and epoch --------------------------------------------------------------------------

    def _train_step(self, k):
        """Optimizer step k of the epoch for every cell that has it."""
        self._step(self.step_numbers[k], self.batch_columns[k], *self.state)

    def _optimizer_step(self, k, columns, *state):
        """Step k of the epoch (k a 0-d tensor; columns: its batch's positions in the epoch's order): the batch, the
        gradients and the AdamW step (torch.optim.AdamW's arithmetic) of the scheduled cells with a finite loss; the
        others keep parameters, moments and step count exactly. Every tensor it reads or writes is an argument
        (state: the _StepState fields), so it can be compiled into one call (_compiled)."""
        s = _StepState(*state)
        index = s.order.index_select(1, columns)
        x = torch.gather(s.x_train, 1, index[:, :, None].expand(-1, -1, s.x_train.shape[2]))
        y = torch.gather(s.y_train, 1, index)
        weight = s.order_weight.index_select(1, columns)
        scheduled = (k < s.cell_steps) & (s.epoch <= s.epochs) & s.alive
        grads, losses = self._gradients(s.flat, x, y, weight, s.penalty)
        finite = torch.isfinite(losses)
        newly_diverged = scheduled & ~finite
        s.diverged_epoch.copy_(torch.where(newly_diverged, s.epoch, s.diverged_epoch))
        s.alive.copy_(s.alive & ~newly_diverged)
        active = (scheduled & finite)[:, None]
        grad = torch.cat([grads[name].flatten(1) for name, _, _ in self.layout], dim=1)
        beta1, beta2 = BETAS
        count = s.step_count + 1
        m = torch.lerp(s.exp_avg, grad, 1 - beta1)
        v = s.exp_avg_sq * beta2 + grad * grad * (1 - beta2)
        denom = v.sqrt() / torch.sqrt(1 - beta2**count) + ADAM_EPS
        p = s.flat * (1 - s.lr * s.weight_decay) - s.lr / (1 - beta1**count) * (m / denom)
        s.flat.copy_(torch.where(active, p, s.flat))
        s.exp_avg.copy_(torch.where(active, m, s.exp_avg))
        s.exp_avg_sq.copy_(torch.where(active, v, s.exp_avg_sq))
        s.step_count.copy_(torch.where(active, count, s.step_count))

    def _total_loss(self, params, x, y, weight, penalty):
        """Sum of the cells' losses (its gradient is each cell's own gradient) and the per-cell losses."""
        losses = torch.vmap(self._cell_loss, randomness="different")(params, x, y, weight, penalty)
        return losses.sum(), losses

    def _gradients(self, flat, x, y, weight, penalty):
        """Each cell's gradient (by name) and loss. On the CPU, eager: autograd on leaf views of the parameters (about
        twice as fast as torch.func there). Compiled or on CUDA (where the epoch is a graph replay, so framework time
        does not count): torch.func.grad_and_value, which traces whole."""
        params = _unflat(flat, self.layout)
        if self.compiled or self.device.type == "cuda":
            grads, (_, losses) = torch.func.grad_and_value(self._total_loss, has_aux=True)(
                params, x, y, weight, penalty
            )
            return grads, losses
        params = {name: p.detach().requires_grad_(True) for name, p in params.items()}
        total, losses = self._total_loss(params, x, y, weight, penalty)
        return dict(zip(params, torch.autograd.grad(total, list(params.values())))), losses

    @torch.no_grad()
    def _evaluate(self):
        self.model.eval()
        fastpath = torch.backends.mha.get_fastpath_enabled()
        torch.backends.mha.set_fastpath_enabled(False)  # the fused encoder-layer kernel has no vmap rule
        try:
            self._evaluate_splits(*self.evaluation_state)
        finally:
            torch.backends.mha.set_fastpath_enabled(fastpath)
        # Means over each split's real rows, outside the compiled graph: eager row sums are rounded in the same
        # order whatever the group's size (inductor's fused reductions are not), so a cell's curves stay the same
        # alone and batched, compiled too.
        mask = self.evaluation_mask
        self.curves.index_copy_(
            0, (self.epoch - 1).reshape(1), ((self.evaluation_rows * mask).sum(-1) / mask.sum(-1))[None]
        )

    def _evaluation(self, flat, rows, x_train, y_train, x_test, y_test):
        """Every cell's per-example loss and correctness on its train and test splits, written to rows
        (S, 4, n_samples) in CURVE_FIELDS order. Every tensor it reads or writes is an argument, as for
        _optimizer_step."""
        params = _unflat(flat, self.layout)
        train = torch.vmap(self._cell_eval)(params, x_train, y_train)
        test = torch.vmap(self._cell_eval)(params, x_test, y_test)
        rows.copy_(torch.cat([train, test], dim=1))

    def _epoch(self):
        self.epoch += 1
        self._shuffle()
        self.model.train()
        for k in range(self.max_steps):
            self._train_step(k)
        self._evaluate()

    def _shuffle(self):
        """This epoch's order of every cell's train rows: rows sorted by a hash of (seed, epoch, row).

        A counter-based draw, computed where the cells run (inside the CUDA graph on a GPU): integer arithmetic
        (wrapping int64 multiply, xor, shift) gives the same permutation on every device and in every group.
        Padding rows get the largest key, so they sort last.
        """
        n_train = self.cell_n_train[:, None]
        x = self.seeds[:, None] * _GOLDEN + self.epoch * _MIX1 + self.row_index[None, :]
        for shift, multiplier in ((30, _MIX1), (27, _MIX2)):
            x = (x ^ (x >> shift)) * multiplier
        x = x ^ (x >> 31)
        keys = torch.where(self.row_index[None, :] < n_train, x, torch.iinfo(torch.long).max)
        # When the padded batches are wider than the split (few examples), padding positions may point past it:
        # send them to the last row, a zero padding row (the train split is always shorter than n_samples).
        order = torch.sort(keys, dim=1, stable=True).indices.clamp_max(self.x_train.shape[1] - 1)
        self.order.copy_(order)

    # ---- running ---------------------------------------------------------------------------------------------

    def run(self, log=None):
        """Train every cell to its own epoch count; fill and return the per-cell ToyResults."""
        for epoch in range(1, self.max_epochs + 1):
            self.advance()
            if log and (epoch == 1 or epoch % max(1, self.max_epochs // 10) == 0):
                log(_progress(epoch, self.curves[epoch - 1].tolist()))
        return self.finish()

    def advance(self):
        """Queue the next epoch. On CUDA it runs asynchronously on the group's own stream; the first epoch runs
        eagerly (the warm-up capture needs) and is then captured as a graph that every later epoch replays
        (capture itself runs nothing)."""
        self.epochs_done += 1
        if self.device.type != "cuda":
            with torch.enable_grad():
                self._epoch()
            return
        with torch.cuda.stream(self.stream), torch.enable_grad():
            if self.graph is None:
                self._epoch()  # epoch 1, for real
                self.graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(self.graph, stream=self.stream):
                    self._epoch()
            else:
                self.graph.replay()

    def finish(self):
        """Per-cell curves (only the epochs a cell completed) and final embeddings, as the per-cell loop returned."""
        if self.device.type == "cuda":
            self.stream.synchronize()
        curves = self.curves.cpu().numpy()
        diverged = self.diverged_epoch.cpu().tolist()
        embedding = self.params["embedding.weight"].cpu().numpy()
        for s, (hp, result) in enumerate(zip(self.hps, self.results)):
            last = min(diverged[s] - 1 if diverged[s] else int(hp["epochs"]), self.epochs_done)
            result.curves = [
                dict(epoch=e + 1, **{f: float(curves[e, s, i]) for i, f in enumerate(CURVE_FIELDS)})
                for e in range(last)
            ]
            result.diverged_at = {"epoch": diverged[s]} if diverged[s] else None
            result.embedding = embedding[s].copy()
            result.state = {name: p[s].detach().cpu().clone() for name, p in self.params.items()}
        return self.results
