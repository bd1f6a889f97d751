"""Batches from the token bins.

Every batch is a pure function of (seed, stream, step): the window offsets come from a NumPy generator keyed by those
three numbers. So a resumed run needs nothing but the step to continue on exactly the same data, and 1 or N DDP
processes see the same global batch (each rank takes its own slice of micro-batches).

GPT and Qwen2 read `block_size + 1` tokens and predict the next one. BERT reads `block_size` tokens, pads everything
after the first end-of-text (a window never mixes two documents), and masks 15 % of the real tokens BERT-style.
"""

import os
from pathlib import Path

import numpy as np
import torch

from harmonic.llm.bins import validate_bins

TRAIN_STREAM, TRAIN_EVAL_STREAM, VAL_STREAM = 0, 1, 2
IGNORE_INDEX = -100


def padded_vocab(vocab_size: int, extra: int = 0, multiple: int = 64) -> int:
    """Embedding rows: the data's ids plus `extra` special ids, rounded up (50257 -> 50304, as nanoGPT)."""
    return -(-(vocab_size + extra) // multiple) * multiple


class TokenBins:
    """The memmapped train.bin / val.bin of one prepared data directory.

    `vocab_limit` (tiny CPU configs only) keeps the `vocab_limit` most frequent ids of train.bin (and the end-of-text
    id) and maps every other id to one extra <unk> id: a 50k-row output layer would dominate a d=64 model's time on
    a CPU. `vocab_size` / `eot_token` are then the compact ones and `to_model_ids` maps GPT-2 ids to them.
    """

    def __init__(self, data_dir: str | os.PathLike, verify_hash: bool = False, vocab_limit: int | None = None):
        self.data_dir = Path(data_dir)
        # A quick check (meta present, sizes match) always; the full hash and id scan when asked (the prepare
        # rule already did it once).
        self.meta = validate_bins(self.data_dir, check_hash=verify_hash, check_ids=verify_hash)
        self.gpt2_vocab_size = int(self.meta["vocab_size"])
        self.lut = None
        self.vocab_size = self.gpt2_vocab_size
        self.eot_token = int(self.meta["eot_token"])
        if vocab_limit:
            counts = np.bincount(self.tokens("train"), minlength=self.gpt2_vocab_size)
            counts[self.eot_token] = np.iinfo(np.int64).max  # always kept
            keep = np.sort(np.argsort(-counts, kind="stable")[:vocab_limit])
            self.lut = np.full(self.gpt2_vocab_size, len(keep), dtype=np.int64)  # len(keep) = <unk>
            self.lut[keep] = np.arange(len(keep))
            self.vocab_size = len(keep) + 1
            self.eot_token = int(self.lut[self.eot_token])

    def to_model_ids(self, ids):
        """GPT-2 ids -> the ids the model sees (identity without a vocab limit)."""
        return ids if self.lut is None else self.lut[np.asarray(ids)]

    def tokens(self, split: str) -> np.memmap:
        # A fresh memmap per call avoids keeping pages of a 17 GB file alive (nanoGPT does the same).
        return np.memmap(self.data_dir / self.meta["splits"][split]["file"], dtype=np.uint16, mode="r")

    def offsets(self, split: str, count: int, window: int, seed: int, stream: int, step: int) -> np.ndarray:
        n = len(self.tokens(split))
        if n <= window:
            raise ValueError(f"{split}.bin holds {n} tokens, fewer than one window of {window + 1}")
        rng = np.random.default_rng([seed, stream, step])
        return rng.integers(0, n - window, size=count)

    def windows(self, split: str, offsets: np.ndarray, window: int) -> torch.Tensor:
        data = self.tokens(split)
        windows = np.stack([data[o : o + window].astype(np.int64) for o in offsets])
        return torch.from_numpy(self.to_model_ids(windows))


def causal_batch(windows: torch.Tensor) -> dict[str, torch.Tensor]:
    """Next-token prediction from (B, T+1) windows."""
    return {"input_ids": windows[:, :-1], "labels": windows[:, 1:]}


def mlm_batch(
    windows: torch.Tensor,
    generator: torch.Generator,
    eot_token: int,
    mask_token: int,
    pad_token: int,
    text_vocab: int,
    mask_probability: float = 0.15,
) -> dict[str, torch.Tensor]:
    """BERT masked-LM batch from (B, T) windows.

    Positions after the first end-of-text of a window become [PAD] (attention mask 0, never predicted). Of the real
    tokens, `mask_probability` are selected; 80 % of those become [MASK], 10 % a random text token, 10 % stay.
    """
    tokens = windows.clone()
    is_eot = tokens == eot_token
    after_first_eot = (torch.cumsum(is_eot.long(), dim=1) - is_eot.long()) > 0
    attention_mask = (~after_first_eot).long()
    tokens[after_first_eot] = pad_token

    selected = (torch.rand(tokens.shape, generator=generator) < mask_probability) & attention_mask.bool()
    labels = torch.where(selected, tokens, torch.full_like(tokens, IGNORE_INDEX))
    draw = torch.rand(tokens.shape, generator=generator)
    random_ids = torch.randint(0, text_vocab, tokens.shape, generator=generator)
    inputs = torch.where(selected & (draw < 0.8), torch.full_like(tokens, mask_token), tokens)
    inputs = torch.where(selected & (draw >= 0.8) & (draw < 0.9), random_ids, inputs)
    return {"input_ids": inputs, "labels": labels, "attention_mask": attention_mask}


class BatchSource:
    """Micro-batches for one model kind: `micro(split, stream, step, index)` is deterministic in all four."""

    def __init__(self, bins: TokenBins, kind: str, block_size: int, micro_batch: int, seed: int, special: dict):
        self.bins, self.kind, self.block_size, self.micro_batch, self.seed = bins, kind, block_size, micro_batch, seed
        self.special = special
        self.window = block_size if kind == "bert" else block_size + 1

    def micro(self, split: str, stream: int, step: int, index: int, total: int) -> dict[str, torch.Tensor]:
        """Micro-batch `index` of the `total` that make up global batch `step` of `stream`."""
        offsets = self.bins.offsets(split, total * self.micro_batch, self.window, self.seed, stream, step)
        windows = self.bins.windows(
            split, offsets[index * self.micro_batch : (index + 1) * self.micro_batch], self.window
        )
        if self.kind != "bert":
            return causal_batch(windows)
        generator = torch.Generator().manual_seed(
            int(np.random.default_rng([self.seed, stream, step, index]).integers(2**62))
        )
        return mlm_batch(
            windows,
            generator,
            eot_token=self.bins.eot_token,
            mask_token=self.special["mask_token"],
            pad_token=self.special["pad_token"],
            text_vocab=self.bins.vocab_size,
            mask_probability=self.special.get("mask_probability", 0.15),
        )
