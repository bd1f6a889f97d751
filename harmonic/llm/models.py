"""GPT (nanoGPT-style), BERT (masked LM) and Qwen2 with a tied harmonic head.

Every model maps a batch to final hidden states, and its head (a HarmonicHead whose centres ARE the input token
embedding, tied_weight=embedding.weight) turns them into the loss with `head.loss`, which takes the fused kernel on
CUDA when one exists. The models' forward returns the loss so DDP sees one forward per backward.

The GPT is written out here (readable top to bottom, no transformers needed, so the GPU check runs anywhere);
BERT and Qwen2 use the transformers encoders/decoders (BertModel, Qwen2Model) without their output layers.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from harmonic.heads import BASELINE, COSINE_HEADS, head_from_spec
from harmonic.llm.config import HEAD_KERNELS
from harmonic.llm.data import IGNORE_INDEX, padded_vocab

MODEL_KINDS = ("gpt", "bert", "qwen2")


def lm_head_spec(spec: dict | str, d_model: int) -> dict:
    """The language-model defaults on top of the library's: the exponent n defaults to sqrt(d_model) (Baek et al.
    use n = sqrt(768) for GPT-2) and the CE baseline has no bias (a tied nanoGPT lm_head). The cosine heads
    (COSINE_HEADS) have no exponent."""
    spec = {"distance": spec} if isinstance(spec, str) else dict(spec)
    if spec["distance"] == BASELINE:
        spec.setdefault("bias", False)
    elif spec.get("n") is None and spec["distance"] not in COSINE_HEADS:
        spec["n"] = math.sqrt(d_model)
    return spec


# -----------------------------------------------------------------------------------------------------------------
# GPT


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd: int, n_head: int, bias: bool, dropout: float = 0.0, scale: float | None = None):
        super().__init__()
        self.n_head, self.dropout, self.scale = n_head, dropout, scale
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(  # flash attention on GPUs that have it
            q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0, scale=self.scale
        )
        return self.resid_dropout(self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C)))


class MLP(nn.Module):
    def __init__(self, n_embd: int, bias: bool, dropout: float = 0.0):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, n_embd: int, n_head: int, bias: bool, dropout: float = 0.0, scale: float | None = None):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, bias=bias)
        self.attn = CausalSelfAttention(n_embd, n_head, bias, dropout, scale)
        self.ln_2 = nn.LayerNorm(n_embd, bias=bias)
        self.mlp = MLP(n_embd, bias, dropout)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    """nanoGPT's GPT-2. dropout (embeddings, attention, residual branches) and attn_scale_by_inverse_layer (the
    attention logits of layer i also divided by i + 1, on in Baek et al.'s training script) default off."""

    kind = "gpt"

    def __init__(
        self,
        vocab_size,
        head,
        n_layer=12,
        n_head=12,
        n_embd=768,
        block_size=1024,
        bias=False,
        dropout=0.0,
        attn_scale_by_inverse_layer=False,
    ):
        super().__init__()
        self.n_layer, self.n_head, self.n_embd, self.block_size = n_layer, n_head, n_embd, block_size
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.drop = nn.Dropout(dropout)
        head_dim = n_embd // n_head
        scales = [1 / math.sqrt(head_dim) / (i + 1) if attn_scale_by_inverse_layer else None for i in range(n_layer)]
        self.blocks = nn.ModuleList([Block(n_embd, n_head, bias, dropout, scale) for scale in scales])
        self.ln_f = nn.LayerNorm(n_embd, bias=bias)
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):  # GPT-2's scaled init of the residual projections
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))
        self.head = head_from_spec(head, n_embd, vocab_size, tied_weight=self.wte.weight)

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    @property
    def embedding(self) -> nn.Embedding:
        return self.wte

    def hidden(self, input_ids, attention_mask=None):
        T = input_ids.shape[1]
        if T > self.block_size:
            raise ValueError(f"sequence of {T} tokens is longer than block_size {self.block_size}")
        x = self.drop(self.wte(input_ids) + self.wpe(torch.arange(T, device=input_ids.device)))
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)

    def attention_shape(self):
        return self.n_layer, self.n_head, self.n_embd // self.n_head


# -----------------------------------------------------------------------------------------------------------------
# BERT and Qwen2 from transformers (imported lazily: the GPT path never needs transformers)


class BertMLM(nn.Module):
    """BertModel + BERT's MLM transform (dense, GELU, LayerNorm), then the tied head on the masked positions."""

    kind = "bert"

    def __init__(
        self,
        vocab_size,
        head,
        n_layer=12,
        n_head=12,
        n_embd=768,
        block_size=512,
        intermediate_size=None,
        pad_token=None,
        dropout=0.0,
    ):
        super().__init__()
        from transformers import BertConfig, BertModel

        config = BertConfig(
            vocab_size=vocab_size,
            hidden_size=n_embd,
            num_hidden_layers=n_layer,
            num_attention_heads=n_head,
            intermediate_size=intermediate_size or 4 * n_embd,
            max_position_embeddings=block_size,
            pad_token_id=pad_token,
            hidden_dropout_prob=dropout,
            attention_probs_dropout_prob=dropout,
            attn_implementation="sdpa",
        )
        self.n_layer, self.n_head, self.n_embd, self.block_size = n_layer, n_head, n_embd, block_size
        self.bert = BertModel(config, add_pooling_layer=False)
        # BertEmbeddings zeroes the [PAD] row (padding_idx). That row is also a head centre, and a zero centre has
        # no direction: the cosine distance to it is 0/0 = NaN. [PAD] positions are attention-masked and never
        # predicted, so the row can be an ordinary, trainable one.
        word_embeddings = self.bert.embeddings.word_embeddings
        word_embeddings.padding_idx = None
        if pad_token is not None:
            with torch.no_grad():
                word_embeddings.weight[pad_token].normal_(0.0, config.initializer_range)
        self.transform = nn.Sequential(nn.Linear(n_embd, n_embd), nn.GELU(), nn.LayerNorm(n_embd, eps=1e-12))
        self.head = head_from_spec(head, n_embd, vocab_size, tied_weight=self.bert.embeddings.word_embeddings.weight)

    @property
    def embedding(self) -> nn.Embedding:
        return self.bert.embeddings.word_embeddings

    def hidden(self, input_ids, attention_mask=None):
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask)
        return self.transform(out.last_hidden_state)

    def attention_shape(self):
        return self.n_layer, self.n_head, self.n_embd // self.n_head


class Qwen2LM(nn.Module):
    """Qwen2Model (RMSNorm, RoPE, GQA, SwiGLU) + the tied head; vocabulary sized to the data, not 151936."""

    kind = "qwen2"

    def __init__(
        self,
        vocab_size,
        head,
        n_layer=24,
        n_head=14,
        n_kv_head=2,
        n_embd=896,
        block_size=1024,
        intermediate_size=4864,
        rope_theta=1e6,
    ):
        super().__init__()
        from transformers import Qwen2Config, Qwen2Model

        kwargs = dict(
            vocab_size=vocab_size,
            hidden_size=n_embd,
            intermediate_size=intermediate_size,
            num_hidden_layers=n_layer,
            num_attention_heads=n_head,
            num_key_value_heads=n_kv_head,
            max_position_embeddings=block_size,
            tie_word_embeddings=True,
            use_cache=False,
            attn_implementation="sdpa",
        )
        config = Qwen2Config(**kwargs)
        if hasattr(config, "rope_parameters"):  # transformers >= 5
            config.rope_parameters = {"rope_type": "default", "rope_theta": rope_theta}
            config = Qwen2Config(**kwargs, rope_parameters=config.rope_parameters)
        else:
            config = Qwen2Config(**kwargs, rope_theta=rope_theta)
        self.n_layer, self.n_head, self.n_embd, self.block_size = n_layer, n_head, n_embd, block_size
        self.qwen = Qwen2Model(config)
        self.head = head_from_spec(head, n_embd, vocab_size, tied_weight=self.qwen.embed_tokens.weight)

    @property
    def embedding(self) -> nn.Embedding:
        return self.qwen.embed_tokens

    def hidden(self, input_ids, attention_mask=None):
        return self.qwen(input_ids=input_ids).last_hidden_state

    def attention_shape(self):
        return self.n_layer, self.n_head, self.n_embd // self.n_head


# -----------------------------------------------------------------------------------------------------------------


class LanguageModel(nn.Module):
    """Wraps one of the above: forward(batch) -> mean loss over the labelled positions (labels != -100)."""

    def __init__(
        self, body: nn.Module, head_kernel: str = "auto", label_smoothing: float = 0.0, prob_floor: float = 0.0
    ):
        super().__init__()
        if head_kernel not in HEAD_KERNELS:
            raise ValueError(f"head_kernel must be one of {', '.join(HEAD_KERNELS)}, got {head_kernel!r}")
        self.body = body
        self.fused = HEAD_KERNELS[head_kernel]
        self.label_smoothing, self.prob_floor = label_smoothing, prob_floor

    @property
    def head(self):
        return self.body.head

    def labelled_hidden(self, batch):
        hidden = self.body.hidden(batch["input_ids"], batch.get("attention_mask"))
        labels = batch["labels"]
        if self.body.kind == "bert":  # the head only sees masked positions (15 %): saves 85 % of the head's work
            keep = labels != IGNORE_INDEX
            return hidden[keep], labels[keep]
        return hidden.reshape(-1, hidden.shape[-1]), labels.reshape(-1)

    def forward(self, batch):
        """The training loss: cross-entropy with label_smoothing, on the floored probabilities when prob_floor > 0."""
        x, y = self.labelled_hidden(batch)
        if self.prob_floor:
            return floored_cross_entropy(self.head(x), y, self.prob_floor, self.label_smoothing)
        return self.head.loss(x, y, ignore_index=IGNORE_INDEX, label_smoothing=self.label_smoothing, fused=self.fused)

    @torch.no_grad()
    def logits(self, batch):
        """(logits, labels) at the labelled positions, for accuracy and the logit effective rank."""
        x, y = self.labelled_hidden(batch)
        return self.head(x), y

    def flops_per_token(self) -> float:
        """PaLM appendix B: 6 N + 12 L H Q T (N without position embeddings, as nanoGPT counts it)."""
        n_params = sum(p.numel() for p in self.parameters())
        for name, p in self.named_parameters():
            if "wpe" in name or "position_embeddings" in name:
                n_params -= p.numel()
        layers, heads, head_dim = self.body.attention_shape()
        return 6 * n_params + 12 * layers * heads * head_dim * self.body.block_size


def floored_cross_entropy(logits, y, alpha: float, label_smoothing: float = 0.0):
    """Both original codes' loss: cross-entropy on log(p + alpha/V), p = softmax(logits), V = the head's classes.

    Computed in log space (logaddexp), so it does not underflow where the originals' pow did; as there, a target far
    below alpha/V gets no gradient and the loss per token is at most log(V (1 + alpha) / alpha) (15.4 nats at 50304)."""
    log_p = F.log_softmax(logits.float(), dim=-1)
    floored = torch.logaddexp(log_p, torch.full((), math.log(alpha / logits.shape[-1]), device=log_p.device))
    return F.cross_entropy(floored, y, ignore_index=IGNORE_INDEX, label_smoothing=label_smoothing)


def special_tokens(vocab_size: int) -> dict:
    """BERT's extra ids just past the data's vocabulary (50257 -> [MASK] 50257, [PAD] 50258)."""
    return {"mask_token": vocab_size, "pad_token": vocab_size + 1}


def build_model(
    kind: str,
    model_args: dict,
    head: dict | str,
    data_vocab: int,
    head_kernel: str = "auto",
    label_smoothing: float = 0.0,
    prob_floor: float = 0.0,
) -> LanguageModel:
    """The model `kind` with `model_args`, a tied head from `head` (LM defaults filled), vocab sized to the data;
    head_kernel picks the loss path (HEAD_KERNELS), label_smoothing and prob_floor shape the training loss."""
    if kind not in MODEL_KINDS:
        raise ValueError(f"unknown model {kind!r}; valid: {', '.join(MODEL_KINDS)}")
    args = dict(model_args)
    d_model = args.get("n_embd", 768)
    spec = lm_head_spec(head, d_model)
    if kind == "gpt":
        body = GPT(padded_vocab(data_vocab), spec, **args)
    elif kind == "bert":
        body = BertMLM(
            padded_vocab(data_vocab, extra=2), spec, pad_token=special_tokens(data_vocab)["pad_token"], **args
        )
    else:
        body = Qwen2LM(padded_vocab(data_vocab), spec, **args)
    return LanguageModel(body, head_kernel, label_smoothing, prob_floor)
