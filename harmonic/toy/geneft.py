"""The GenEFT study: a phase diagram of generalisation over train fraction x encoder lr x decoder lr.

GenEFT (Baek, Liu, Tegmark 2024) trains an encoder (the token embedding) and a decoder (the network that reads it)
at separate learning rates and finds generalisation as a phase between memorising and confusion. Here every toy
model is split the same way, by parameter name: the encoder is the token embedding and the learned positions, the
decoder is everything after (the MLP's body and head bias; the transformer's layers, norm and head). The MLP's head
centres are its embedding (tied), so they learn at the encoder's rate. The optimizer is one AdamW with two
parameter groups; harmonic.toy.batched.ToyGroup applies `lr` to the encoder and `decoder_lr` to the decoder.

A cell's phase, from its final accuracies (cell metrics, so the claims read them as columns of the toy table):
    generalised    final test accuracy >= grokking_threshold (the paper's 0.9)
    in_transition  band_low <= final test accuracy < grokking_threshold: neither memorising nor generalising
"""

ENCODER_PREFIXES = ("embedding.", "position")


def is_encoder(name):
    """Whether a parameter (by its name in the model) belongs to the encoder group."""
    return name.startswith(ENCODER_PREFIXES)


def decoder_columns(named):
    """One bool per element of the flattened parameters (named: name -> tensor, in ToyGroup's flat order): True
    for the decoder's elements."""
    columns = []
    for name, p in named.items():
        columns += [not is_encoder(name)] * p.numel()
    return columns


def dataset_label(task, fraction, encoder_lr, decoder_lr):
    """Path label of one grid point, e.g. modular_addition-geneft-f0.5-e0.001-d0.01."""
    return f"{task}-geneft-f{fraction:g}-e{encoder_lr:g}-d{decoder_lr:g}"


def geneft_cells(section, device, setting):
    """The study's cells under `setting` (if the study runs under it): tasks x models x heads (the section's) x
    fractions x encoder lrs x decoder lrs x seeds."""
    from harmonic.toy.grid import make_cell  # grid.py lists this study's cells with the others

    study = section.get("geneft")
    if not study or setting not in study["settings"]:
        return []
    cells = []
    for task in study["tasks"]:
        for model in study["models"]:
            for spec in section["heads"]:
                for fraction in study["fractions"]:
                    for encoder_lr in study["encoder_lrs"]:
                        for decoder_lr in study["decoder_lrs"]:
                            for seed in study["seeds"]:
                                dataset = dataset_label(task, fraction, encoder_lr, decoder_lr)
                                train = dict(
                                    study.get("train") or {},
                                    lr=float(encoder_lr),
                                    decoder_lr=float(decoder_lr),
                                    split=study["split"],
                                    train_fraction=float(fraction),
                                    band_low=study["band_low"],
                                )
                                cell = make_cell(
                                    section, device, setting, "geneft", dataset, task, model, spec, seed, train
                                )
                                cell.update(encoder_lr=float(encoder_lr), decoder_lr=float(decoder_lr))
                                cells.append(cell)
    return cells


def phase_metrics(hp, final_test_acc):
    """The cell's phase indicators (1/0) from its final test accuracy; {} for cells outside the study."""
    if hp.get("study") != "geneft" or final_test_acc is None:
        return {}
    threshold, low = hp["grokking_threshold"], hp["band_low"]
    return dict(
        generalised=int(final_test_acc >= threshold),
        in_transition=int(low <= final_test_acc < threshold),
    )
