"""Post-training analyses of a language model.

- effective rank (exp entropy of singular values) of every weight matrix of the body, of the embedding (= the head's
  centres, they are tied), of the logits and of the final hidden states on validation tokens;
- PCA structure of the embedding and of the final hidden states;
- Baek et al.'s parallelogram (function-vector) test: for word-pair tasks (wordpairs/<task>.tsv, written for this
  project) take the last-token embedding of " word", mean-centre over the task's words, project on the top PCs, and
  for every two pairs (a, a'), (b, b') measure l_para = ||E_a + E_b' - E_a' - E_b|| / sigma with
  sigma = sqrt(mean_k ||E_k||^2). Small values mean the pairs form parallelograms (a shared "function vector").
"""

import csv
import itertools
from pathlib import Path

import numpy as np
import torch

from harmonic.metrics import effective_rank, pca_summary
from harmonic.runs import atomic_output, atomic_write_json

WORDPAIRS_DIR = Path(__file__).with_name("wordpairs")


def task_names() -> list[str]:
    return sorted(p.stem for p in WORDPAIRS_DIR.glob("*.tsv"))


def read_pairs(task: str) -> list[tuple[str, str]]:
    path = WORDPAIRS_DIR / f"{task}.tsv"
    if not path.is_file():
        raise ValueError(f"unknown word-pair task {task!r}; known: {', '.join(task_names())}")
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            left, right = line.split("\t")
            pairs.append((left.strip(), right.strip()))
    return pairs


def last_token_ids(words: list[str], encoding) -> dict[str, int]:
    """GPT-2 id of the last BPE token of " word" (the word as it appears mid-sentence)."""
    return {w: encoding.encode_ordinary(" " + w)[-1] for w in words}


def parallelogram_losses(
    embedding: np.ndarray, pairs: list[tuple[str, str]], ids: dict[str, int], k: int
) -> np.ndarray:
    """l_para of every two distinct pairs of the task, in the top-k PCs of the task's mean-centred embeddings."""
    words = sorted({w for pair in pairs for w in pair})
    E = embedding[[ids[w] for w in words]].astype(np.float64)
    E = E - E.mean(axis=0)
    _, _, vt = np.linalg.svd(E, full_matrices=False)
    P = E @ vt[: min(k, vt.shape[0])].T
    row = {w: i for i, w in enumerate(words)}
    sigma = np.sqrt(np.mean(np.sum(P**2, axis=1)))
    losses = []
    for (a, a2), (b, b2) in itertools.combinations(pairs, 2):
        losses.append(np.linalg.norm(P[row[a]] + P[row[b2]] - P[row[a2]] - P[row[b]]) / sigma)
    return np.asarray(losses)


def parallelogram_table(embedding: np.ndarray, encoding, k: int = 5, to_model_ids=None, unk=None) -> list[dict]:
    """One row per (task, quadruple) with its l_para. With a limited vocabulary, pairs with a word outside it are
    left out (their ids would all share the <unk> row)."""
    rows = []
    for task in task_names():
        pairs = read_pairs(task)
        ids = last_token_ids([w for pair in pairs for w in pair], encoding)
        if to_model_ids is not None:
            ids = {w: int(to_model_ids(i)) for w, i in ids.items()}
            pairs = [(a, b) for a, b in pairs if unk not in (ids[a], ids[b])]
        if len(pairs) < 2:
            continue
        for i, value in enumerate(parallelogram_losses(embedding, pairs, ids, k)):
            rows.append({"task": task, "quadruple": i, "l_para": float(value)})
    return rows


@torch.no_grad()
def analyse_model(model, source, cfg, device, autocast, out_dir) -> dict:
    """Run the analyses on a trained LanguageModel; writes analysis.json and parallelogram.csv, returns scalars."""
    from harmonic.llm.data import VAL_STREAM
    from harmonic.llm.tokenizer import get_encoding

    model.eval()
    out_dir = Path(out_dir)
    text_vocab = source.bins.vocab_size
    embedding = model.body.embedding.weight[:text_vocab].float().cpu().numpy()

    # The body's matrices, as Miller-Golub et al. (embedding tables left out: token, position, the tied centres).
    tables = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    weight_ranks = {
        name: effective_rank(p.float().cpu().numpy())
        for name, p in model.named_parameters()
        if p.dim() == 2 and id(p) not in tables
    }
    batch = {k: v.to(device) for k, v in source.micro("val", VAL_STREAM, 0, 0, 1).items()}
    with autocast:
        x, _ = model.labelled_hidden(batch)
        x = x[: cfg["analysis"]["logit_rows"]]
        logits = model.head(x).float()
    hidden = x.float().cpu().numpy()
    k = cfg["analysis"]["pca_components"]
    pca = pca_summary(embedding, standardize=False, k=k)
    hidden_pca = pca_summary(hidden, standardize=False, k=min(k, *hidden.shape))

    bins = source.bins
    try:
        encoding = get_encoding()
    except (ImportError, FileNotFoundError) as err:  # e.g. a GPU node without tiktoken: skip only this analysis
        print(f"parallelogram analysis skipped: {err}")
        encoding = None
    rows = []
    if encoding is not None:
        rows = parallelogram_table(
            embedding,
            encoding,
            k=cfg["analysis"]["pca_components"],
            to_model_ids=bins.to_model_ids if bins.lut is not None else None,
            unk=bins.vocab_size - 1 if bins.lut is not None else None,
        )
    with atomic_output(out_dir / "parallelogram.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["task", "quadruple", "l_para"])
        writer.writeheader()
        writer.writerows(rows)
    per_task = {}
    for row in rows:
        per_task.setdefault(row["task"], []).append(row["l_para"])

    report = {
        "weight_effective_rank": weight_ranks,
        "embedding_effective_rank": effective_rank(embedding),
        # Row-centred: softmax ignores a per-row shift, and harmonic logits -n log(d) share a large one that would
        # otherwise make every matrix look rank one.
        "logits_effective_rank": effective_rank((logits - logits.mean(dim=1, keepdim=True)).cpu().numpy()),
        "embedding_pca": pca,
        "hidden_effective_rank": effective_rank(hidden - hidden.mean(axis=0)),
        "hidden_pca": hidden_pca,
        "parallelogram_median": {task: float(np.median(v)) for task, v in per_task.items()},
    }
    atomic_write_json(out_dir / "analysis.json", report)
    model.train()
    return {
        "weight_effective_rank_mean": float(np.mean(list(weight_ranks.values()))) if weight_ranks else None,
        "embedding_effective_rank": report["embedding_effective_rank"],
        "logits_effective_rank": report["logits_effective_rank"],
        "embedding_ev_pc1_pc2": pca["ev_pc1_pc2"],
        "embedding_n_pcs_90": pca["n_pcs_90"],
        "hidden_effective_rank": report["hidden_effective_rank"],
        "hidden_ev_pc1_pc2": hidden_pca["ev_pc1_pc2"],
        "hidden_n_pcs_90": hidden_pca["n_pcs_90"],
        "parallelogram_median": float(np.median([r["l_para"] for r in rows])) if rows else None,
        "parallelogram_tasks": len(per_task),
        "l_para_median": report["parallelogram_median"],  # per task: table columns l_para_median.<task>
    }
