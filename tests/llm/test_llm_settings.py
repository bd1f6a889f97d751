"""Faithful vs corrected LLM settings: the cosine heads, the two loss options, the optimiser groups and the grid."""

import copy
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

from harmonic.heads import head_from_spec, head_label
from harmonic.llm.config import make_optimizer, resolve_config
from harmonic.llm.grid import MATCHED_KEYS, llm_cells
from harmonic.llm.models import build_model, floored_cross_entropy

REPO = Path(__file__).resolve().parents[2]
TINY_GPT = {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 8}


def cosine(x, w):
    return (x / x.norm(dim=1, keepdim=True)) @ (w / w.norm(dim=1, keepdim=True)).T


def test_cosine_softmax_is_a_cosine_classifier_at_temperature_t():
    torch.manual_seed(0)
    x, y = torch.randn(6, 5), torch.randint(0, 7, (6,))
    head = head_from_spec({"distance": "cosine_softmax", "temperature": 0.1}, 5, 7)
    expected = cosine(x, head.weight.detach()) / 0.1
    torch.testing.assert_close(head(x), expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(head.loss(x, y), F.cross_entropy(expected, y), rtol=1e-5, atol=1e-5)
    assert head_label({"distance": "cosine_softmax", "temperature": 0.1}) == "cosine_softmax-temperature0.1"


def test_cosine_linear_normalises_the_shifted_cosine_linearly():
    """Their cosine_simple: p_i = s_i / sum_j s_j with s = (cos + 1) / 2, no softmax of the similarity."""
    torch.manual_seed(0)
    x = torch.randn(6, 5)
    head = head_from_spec({"distance": "cosine_linear"}, 5, 7)
    s = (cosine(x, head.weight.detach()) + 1) / 2
    torch.testing.assert_close(head(x).softmax(-1), s / s.sum(1, keepdim=True), rtol=1e-5, atol=1e-6)


def test_cosine_heads_have_no_exponent_and_reject_one():
    model = build_model("gpt", TINY_GPT, {"distance": "cosine_softmax", "temperature": 0.5}, 100)
    assert model.head.n is None and model.head.params == {"temperature": 0.5}
    with pytest.raises(ValueError, match="unknown parameter"):
        head_from_spec({"distance": "cosine_linear", "n": 2.0}, 5, 7)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_prob_floor_is_the_originals_log_of_p_plus_alpha_over_v(smoothing):
    """GPT2/model_l2loss.py and llms/model/GPT.py: CE(log(p + 0.01/V)); here in log space, same values."""
    torch.manual_seed(0)
    logits, y = torch.randn(5, 11, dtype=torch.float64) * 4, torch.randint(0, 11, (5,))
    reference = F.cross_entropy(torch.log(logits.softmax(-1) + 0.01 / 11), y, label_smoothing=smoothing)
    torch.testing.assert_close(
        floored_cross_entropy(logits, y, 0.01, smoothing).double(), reference, rtol=1e-5, atol=1e-6
    )
    # A target far below the floor gets no gradient and at most log(V (1 + alpha) / alpha) nats.
    far = torch.tensor([[0.0, 80.0, 0.0]], requires_grad=True)
    loss = floored_cross_entropy(far, torch.tensor([0]), 0.01)
    loss.backward()
    assert loss.item() == pytest.approx(math.log(3 * 1.01 / 0.01), rel=1e-4)
    assert far.grad.abs().max() < 1e-20


def test_label_smoothing_and_floor_reach_the_training_loss():
    torch.manual_seed(0)
    tokens = torch.randint(0, 100, (2, 9))
    batch = {"input_ids": tokens[:, :-1], "labels": tokens[:, 1:]}
    plain = build_model("gpt", TINY_GPT, {"distance": "euclidean"}, 100, head_kernel="reference")
    x, y = plain.labelled_hidden(batch)
    for smoothing, floor in [(0.1, 0.0), (0.1, 0.01)]:
        model = copy.deepcopy(plain)
        model.label_smoothing, model.prob_floor = smoothing, floor
        logits = plain.head(x)
        if floor:
            expected = F.cross_entropy(
                torch.log(logits.softmax(-1) + floor / logits.shape[-1]), y, label_smoothing=smoothing
            )
        else:
            expected = F.cross_entropy(logits, y, label_smoothing=smoothing)
        torch.testing.assert_close(model(batch), expected, rtol=1e-5, atol=1e-5)
    assert not torch.isclose(plain(batch), model(batch))
    with pytest.raises(ValueError, match="label_smoothing"):
        resolve_config({"label_smoothing": 1.0})


@pytest.mark.parametrize("kind", ["gpt", "bert", "qwen2"])
def test_tied_centres_decay_only_when_asked(kind):
    """Both original codes keep nn.Embedding weights (= the tied centres) out of weight decay; make_optimizer decayed
    every matrix."""
    args = {**TINY_GPT, **({"n_kv_head": 1, "intermediate_size": 32} if kind == "qwen2" else {})}
    model = build_model(kind, args, {"distance": "euclidean"}, 100)
    centres = model.head.centres
    linear = next(m.weight for m in model.modules() if isinstance(m, torch.nn.Linear))
    for decay_embeddings in (False, True):
        cfg = resolve_config({"weight_decay": 0.1, "decay_embeddings": decay_embeddings})
        groups = make_optimizer(model, cfg, torch.device("cpu")).param_groups
        decay_of = {id(p): g["weight_decay"] for g in groups for p in g["params"]}
        assert decay_of[id(centres)] == (0.1 if decay_embeddings else 0.0)
        assert decay_of[id(linear)] == 0.1
        assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_inverse_layer_attention_scaling_changes_only_deeper_layers():
    torch.manual_seed(0)
    args = {**TINY_GPT, "n_layer": 2}
    plain = build_model("gpt", args, "baseline", 100).body
    scaled = build_model("gpt", {**args, "attn_scale_by_inverse_layer": True}, "baseline", 100).body
    scaled.load_state_dict(plain.state_dict())
    ids = torch.randint(0, 100, (2, 8))
    torch.testing.assert_close(scaled.blocks[0](scaled.wte(ids)), plain.blocks[0](plain.wte(ids)))
    assert not torch.allclose(scaled.hidden(ids), plain.hidden(ids))


def section(path):
    return yaml.safe_load((REPO / path).read_text())["llm"]


def test_one_optimiser_per_study_unless_the_study_says_otherwise():
    llm = section("presets/paper.yaml")
    cells = llm_cells(llm)
    for cell in cells:
        assert cell["params"]["setting"] == cell["setting"] and cell["params"]["study"] == cell["study"]
    groups = {}
    for cell in cells:
        if cell["setting"] not in llm["studies"][cell["study"]].get("per_head_optimizer", []):
            key = (cell["setting"], cell["study"], cell["architecture"])
            groups.setdefault(key, set()).add(tuple(repr(cell["params"][k]) for k in MATCHED_KEYS))
    assert groups and all(len(values) == 1 for values in groups.values())
    # A head at another learning rate (the preset's old minkowski at 1/30 of euclidean's) is refused, naming it.
    bad = copy.deepcopy(llm)
    bad["overrides"].append({"where": {"study": "mg-llm", "distance": "minkowski"}, "set": {"lr": 6e-3}})
    with pytest.raises(ValueError, match=r"mg-llm \(faithful\), model gpt: heads train with different lr"):
        llm_cells(bad)
    bad["studies"]["mg-llm"]["per_head_optimizer"] = ["faithful", "corrected"]
    assert llm_cells(bad)


def test_paper_preset_faithful_and_corrected_values():
    cells = {(c["setting"], c["model"], c["head"]): c["params"] for c in llm_cells(section("presets/paper.yaml"))}
    ce, harmonic = cells[("faithful", "baek-gpt2-gpt", "baseline")], cells[("faithful", "baek-gpt2-gpt", "euclidean")]
    assert (ce["lr"], ce["min_lr"], ce["warmup_steps"]) == (6e-4, 3e-5, 2000)
    assert (harmonic["lr"], harmonic["min_lr"], harmonic["warmup_steps"], harmonic["head"]["n"]) == (
        6e-3,
        3e-4,
        1000,
        1536,
    )
    assert harmonic["weight_decay"] == 0.0 and harmonic["betas"] == [0.9, 0.95] and not harmonic["decay_embeddings"]
    corrected = cells[("corrected", "baek-gpt2-gpt", "euclidean")]
    assert corrected["lr"] == ce["lr"] and "n" not in corrected["head"]  # n = sqrt(768), the paper's text
    for model in ("mg-llm-gpt", "mg-llm-qwen2"):
        assert {p["label_smoothing"] for (s, m, _), p in cells.items() if (s, m) == ("faithful", model)} == {0.1}
    assert cells[("faithful", "mg-llm-bert", "cosine_linear")]["label_smoothing"] == 0.0  # BERT.py: no smoothing
    assert cells[("faithful", "mg-llm-qwen2", "euclidean")]["head"]["n"] == 1792
    assert cells[("corrected", "mg-llm-gpt", "euclidean")]["label_smoothing"] == 0.0


def test_dropout_reaches_the_gpt_body_in_training_only():
    body = build_model("gpt", {**TINY_GPT, "dropout": 0.5}, "baseline", 100).body
    ids = torch.randint(0, 100, (2, 8))
    assert not torch.equal(body.hidden(ids), body.hidden(ids))
    body.eval()
    assert torch.equal(body.hidden(ids), body.hidden(ids))
