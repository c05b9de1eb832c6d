"""Linear probes of frozen backbones: how well each backbone's features separate the classes of each labelled
set, on data it saw in pre-training (in-pool) and on data it never saw. Prints one table and, with --json,
writes the numbers as data.

    python benchmarks/validity/probe_backbones.py \
        --backbone b0=bundled:b0 --backbone clean=runs/clean/clean_breast_encoder.safetensors \
        --data breastmnist=bundled:breastmnist --data brain_mri=runs/pool/brain_mri_64.npz \
        --data pneumoniamnist=DATA/medmnist/pneumoniamnist.npz [--label-fraction 1 --label-fraction 0.1 --seeds 3] \
        [--json out.json]

The probe is the TPP stage's diagnostic (:mod:`tppeft.probe`): logistic regression on the standardised class
token and mean patch token, C chosen on validation, scored on test by AUC (binary: of class 1; more classes:
one-vs-rest macro). With --label-fraction the probe fits on a stratified subset of the training labels, drawn
per seed as ``data.label_fraction`` draws it (:mod:`tppeft.data.fewshot`); the table gives the mean over seeds.
A set counts as seen in pre-training when a name the backbone's metadata lists (``trained_on``) begins with the
set's NAME (``brain_mri`` matches a pool file ``brain_mri_train.npz``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from tppeft.api import load_data
from tppeft.backbones import build_backbone
from tppeft.backbones.config import BackboneConfig
from tppeft.data.fewshot import labelled_subset
from tppeft.data.transforms import input_pixels, to_model_input
from tppeft.probe import frozen_features, linear_probe


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out = {}
    for value in values:
        name, sep, spec = value.partition("=")
        if not sep or not name or not spec:
            sys.exit(f"--{what} takes NAME=SPEC, got {value!r}")
        out[name] = spec
    return out


def _seen(backbone) -> list[str]:
    """Names of the image sets the backbone's metadata says it was pre-trained on (empty when it does not say)."""
    return [Path(item["file"]).stem if isinstance(item, dict) else str(item[0])
            for item in backbone.identity.get("trained_on") or []]


def features(backbone, data, batch: int = 256) -> dict[str, np.ndarray]:
    """Frozen features of every split of ``data``."""
    vit = backbone.model.eval()
    mean, std = torch.tensor(backbone.mean), torch.tensor(backbone.std)

    def batches(split):
        images = data[split].images
        for i in range(0, len(images), batch):
            yield to_model_input(input_pixels(images[i:i + batch], backbone.image_size), mean, std)

    return {s: frozen_features(vit, batches(s)) for s in ("train", "val", "test")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbone", action="append", required=True, help="NAME=checkpoint (repeatable)")
    ap.add_argument("--data", action="append", required=True, help="NAME=data path (repeatable)")
    ap.add_argument("--label-fraction", type=float, action="append", default=None,
                    help="probe on this fraction of the labels (repeatable; default: all of them)")
    ap.add_argument("--seeds", type=int, default=3, help="label draws averaged with --label-fraction")
    ap.add_argument("--limit", type=int, default=None, help="data.limit: images kept per split")
    ap.add_argument("--json", type=Path, default=None, help="write the numbers here")
    args = ap.parse_args(argv)
    backbones, sets = _pairs(args.backbone, "backbone"), _pairs(args.data, "data")
    rows = []
    for set_name, path in sets.items():
        data = load_data(path, limit=args.limit)
        labels = {s: data[s].labels.numpy().reshape(-1) for s in ("train", "val", "test")}
        for bb_name, spec in backbones.items():
            start = time.perf_counter()
            backbone = build_backbone(BackboneConfig(checkpoint=spec))
            feats = features(backbone, data)
            in_pool = any(seen.startswith(set_name) for seen in _seen(backbone))
            for fraction in args.label_fraction or [None]:
                scores, n_labels = [], len(labels["train"])
                for seed in range(args.seeds) if fraction and fraction < 1 else [0]:
                    idx = labelled_subset(labels["train"], fraction, None, seed)
                    train = (feats["train"], labels["train"]) if idx is None else (feats["train"][idx],
                                                                                   labels["train"][idx])
                    n_labels = len(train[1])
                    scores.append(linear_probe(train, (feats["val"], labels["val"]),
                                               (feats["test"], labels["test"]), "auc", seed))
                rows.append({"data": set_name, "backbone": bb_name, "in_pool": in_pool, "label_fraction": fraction,
                             "train_labels": n_labels, "val_auc": float(np.mean([s["val"] for s in scores])),
                             "test_auc": float(np.mean([s["test"] for s in scores])),
                             "test_auc_per_seed": [round(s["test"], 4) for s in scores],
                             "seconds": round(time.perf_counter() - start, 1)})
            print(f"  {set_name} / {bb_name}: test AUC {rows[-1]['test_auc']:.3f} ({rows[-1]['seconds']} s)",
                  file=sys.stderr)
    print("| data | backbone | saw the set in pre-training | training labels | probe val AUC | probe test AUC |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['data']} | {r['backbone']} | {'yes' if r['in_pool'] else 'no'} | {r['train_labels']} | "
              f"{r['val_auc']:.3f} | {r['test_auc']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps({"seeds": args.seeds,
                                         "limit": args.limit, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
