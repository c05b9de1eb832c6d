"""Volume task: slice aggregation (attention and mean), the slice classifier and its training batches."""

import torch
from conftest import shared_file

from tppeft.config import load_config
from tppeft.experiment.context import prepare_context
from tppeft.tasks.volume import AttentionPool, MeanPool, SliceAggregationHead, SliceClassifier


def test_attention_pool_weights_and_permutation_invariance():
    torch.manual_seed(0)
    pool = AttentionPool(16)
    h = torch.randn(3, 5, 16)
    w = pool.weights(h)
    assert w.shape == (3, 5) and torch.allclose(w.sum(1), torch.ones(3)) and (w > 0).all()
    perm = torch.randperm(5)
    assert torch.allclose(pool(h[:, perm]), pool(h), atol=1e-6)
    assert torch.allclose(MeanPool()(h), h.mean(1))


def _train_head(aggregation: str, h: torch.Tensor, y: torch.Tensor) -> SliceAggregationHead:
    torch.manual_seed(0)
    head = SliceAggregationHead(h.shape[-1], 2, aggregation)
    opt = torch.optim.Adam(head.parameters(), lr=3e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is fastest on a busy machine
    try:
        for _ in range(150):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(head(h), y).backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return head


def test_learned_attention_finds_the_informative_slice():
    """Only one slice per bag (marked in feature 0) carries the label (feature 1): attention pooling must learn
    to weight it, where a mean dilutes it among the other slices."""
    g = torch.Generator().manual_seed(0)
    b, s, d = 512, 6, 8
    h = torch.randn(b, s, d, generator=g)
    key = torch.randint(0, s, (b,), generator=g)
    y = torch.randint(0, 2, (b,), generator=g)
    rows = torch.arange(b)
    h[rows, key, 0] += 4.0
    h[rows, key, 1] += torch.where(y == 1, 2.0, -2.0)
    accuracy = {}
    for aggregation in ("attention", "mean"):
        head = _train_head(aggregation, h, y)
        with torch.no_grad():
            accuracy[aggregation] = float((head(h).argmax(1) == y).float().mean())
            if aggregation == "attention":
                on_key = float(head.pool.weights(h)[rows, key].mean())
    assert accuracy["attention"] > 0.95 and on_key > 0.8, (accuracy, on_key)
    assert accuracy["mean"] < accuracy["attention"] - 0.1, accuracy


def test_slice_classifier_and_training_batches(b0, tmp_path):
    vit = b0.fresh_model()
    model = SliceClassifier(vit, 2, "mean")
    x = torch.randn(2, 3, 3, 64, 64)
    assert model(x).shape == (2, 2)
    # the whole volume equals the mean of its slices' features, through the linear head
    per_slice = vit(x.flatten(0, 1)).view(2, 3, -1)
    assert torch.allclose(model(x), model.head.fc(per_slice.mean(1)), atol=1e-5)

    path = shared_file("medmnist/adrenalmnist3d.npz")
    cfg = load_config(None, [f"data.path={path}", "data.limit=6", "data.image_size=32", "task.slices=4",
                             "task.train_slices=2", "data.augment=false", "device=cpu"])
    ctx = prepare_context(cfg, log=lambda s: None)
    assert ctx.data["train"].images.shape == (6, 4, 1, 28, 28) and ctx.data["train"].size == 32  # resized per batch
    assert ctx.num_images("train") == 24 and ctx.batch("train", torch.arange(5)).shape == (5, 3, 32, 32)
    inputs, labels = ctx.task.train_batch(ctx, torch.arange(6), torch.Generator().manual_seed(0))
    assert inputs.shape == (6, 2, 3, 32, 32) and torch.equal(labels, ctx.data["train"].labels)
    every = ctx.task.inputs(ctx, ctx.data["train"].pixels(), None)
    # two of the four slices per volume, drawn from the step's generator, kept in depth order
    pick = torch.rand(6, 4, generator=torch.Generator().manual_seed(0)).argsort(1)[:, :2].sort(1).values
    assert torch.equal(inputs, every[torch.arange(6)[:, None], pick])
    assert len({tuple(r) for r in pick.tolist()}) > 1  # not the same slices for every volume


def test_a_volume_run_whose_test_volume_repeats_a_training_one_has_no_score_without_twins(tmp_path):
    """Near-twins are found between slices while a volume is scored whole: a test volume that is a training one
    makes slice twins, and the run gives no test_without_twin (it would index volumes with a mask of slices)."""
    import json

    import numpy as np

    from tppeft.cli import main

    rng = np.random.default_rng(0)
    arrays = {}
    for split, n in (("train", 8), ("val", 4), ("test", 4)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 6, 16, 16), dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).astype(np.uint8)[:, None]
    arrays["test_images"][0] = arrays["train_images"][2]
    np.savez(tmp_path / "vol.npz", **arrays)
    cfg = load_config(None, [f"data.path={tmp_path / 'vol.npz'}", "data.image_size=32", "task.slices=4", "threads=1"])
    ctx = prepare_context(cfg, lambda _: None)
    assert ctx.task.name == "volume" and ctx.test_without_twin is not None and len(ctx.test_without_twin) > 4
    out = tmp_path / "run"
    sets = [f"data.path={tmp_path / 'vol.npz'}", "data.image_size=32", "task.slices=4", "arms=[baseline]",
            "seeds=1", "finetune.epochs=1", "finetune.batch_size=4", "threads=1", "peft.targets=[qkv]"]
    assert main(["run", "-o", str(out), *[a for s in sets for a in ("--set", s)]]) == 0
    record = json.loads((out / "results.jsonl").read_text().splitlines()[0])
    assert "auc" in record["test"] and "test_without_twin" not in record
    assert "paired_without_twin" not in json.loads((out / "summary.json").read_text())
