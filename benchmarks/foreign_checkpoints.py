"""Foreign checkpoints: b0 read through other layouts gives b0's numbers; what each family costs.

``exactness``: the bundled b0 written in Hugging Face's ViT-MAE layout (a ``ViTMAEForPreTraining`` folder) and in
MAE's ``.pth`` layout (both predict (row, column, channel) patches), then the same comparison (BreastMNIST at b0's
own 64 px, so ``pretext.decoder: auto`` takes the checkpoint's decoder) from each: held-out pretext loss before and
after the TPP stage and test metrics, per layout, and the largest difference from the native b0 over all seeds.

``cost``: for each supported family, a randomly initialised checkpoint of its real shape written in its own
layout (the weights' values do not change the cost), read as ``backbone.checkpoint``, with the run settings the
docs give for it (docs/backbones.md): parameters, counted FLOPs of one training step per image of each stage (torch's
``FlopCounterMode``, as ``baseline_matched`` counts them), float32 activation memory per image kept for the
backward pass (counted with autograd's saved-tensor hooks), and from these the memory at a batch of 64 and the
time of one BreastMNIST epoch at an assumed sustained rate (``--rate``). With ``--device cuda`` it also times
``--steps`` real steps and reads the peak memory.

    python benchmarks/foreign_checkpoints.py exactness --seeds 3
    python benchmarks/foreign_checkpoints.py cost --threads 2
    python benchmarks/foreign_checkpoints.py cost --device cuda --steps 20
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from tppeft.backbones import build_backbone
from tppeft.backbones.catalog import write_foreign
from tppeft.backbones.formats import DecoderWeights, DinoHeadWeights, dino, mae_pth
from tppeft.cli import main
from tppeft.config import BackboneConfig, load_config
from tppeft.experiment.budget import images_per_epoch, matched_budget
from tppeft.experiment.context import prepare_context
from tppeft.experiment.model import build_run_model
from tppeft.pretext import get_pretext
from tppeft.pretext.heads import DINOHead, MAEDecoder

PTH_KEYS = ["backbone.decoder_heads=4", "backbone.mean=[0.5,0.5,0.5]", "backbone.std=[0.5,0.5,0.5]"]


def exactness(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="foreign-"))
    b0 = build_backbone(BackboneConfig())
    layouts = {"b0 (tool's layout)": [],
               "b0 as Hugging Face ViTMAE": [f"backbone.checkpoint={write_foreign(b0, 'hf:vit_mae', work / 'hf')}"],
               "b0 as MAE .pth": [f"backbone.checkpoint={write_foreign(b0, 'mae-pth', work / 'b0.pth')}", *PTH_KEYS]}
    base = [f"seeds={args.seeds}", "arms=[baseline, tpp]", "data.image_size=64", f"threads={args.threads}",
            f"pretext.epochs={args.pretext_epochs}", f"finetune.epochs={args.finetune_epochs}"]
    base += [f"data.limit={args.limit}"] if args.limit else []
    runs = {}
    for i, (name, sets) in enumerate(layouts.items()):
        out = work / f"run{i}"
        start = time.perf_counter()
        assert main(["run", "-o", str(out), *[a for s in base + sets for a in ("--set", s)]]) == 0
        records = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
        runs[name] = ({(r["arm"], r["seed"]): r for r in records}, time.perf_counter() - start)
    native = runs["b0 (tool's layout)"][0]
    print("\n| checkpoint | pretext head | held-out pretext loss start / end (tpp, mean) | test ACC / AUC tpp "
          "(mean) | test ACC / AUC baseline (mean) | max abs diff vs b0 (losses; metrics) | wall s |")
    print("|---|---|---|---|---|---|---|")
    for name, (recs, wall) in runs.items():
        tpp = [r for (arm, _), r in sorted(recs.items()) if arm == "tpp"]
        base_runs = [r for (arm, _), r in sorted(recs.items()) if arm == "baseline"]

        def mean(values: list[float]) -> float:
            return sum(values) / len(values)

        loss_diff = max(abs(r["pretext"][k] - native[key]["pretext"][k]) for key, r in recs.items() if r["pretext"]
                        for k in ("loss_start", "loss_end"))
        metric_diff = max(abs(r["test"][m] - native[key]["test"][m]) for key, r in recs.items() for m in r["test"])
        print(f"| {name} | {tpp[0]['pretext']['head']} | {mean([r['pretext']['loss_start'] for r in tpp]):.6f} / "
              f"{mean([r['pretext']['loss_end'] for r in tpp]):.6f} | {mean([r['test']['acc'] for r in tpp]):.4f} / "
              f"{mean([r['test']['auc'] for r in tpp]):.4f} | {mean([r['test']['acc'] for r in base_runs]):.4f} / "
              f"{mean([r['test']['auc'] for r in base_runs]):.4f} | {loss_diff:.1e}; {metric_diff:.1e} | {wall:.0f} |")


# ------------------------------------------------------------------------------------------------ cost

def _hf_vit_mae_base(folder: Path) -> None:
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    ViTMAEForPreTraining(ViTMAEConfig()).save_pretrained(folder)  # facebook/vit-mae-base's shape


def _retfound(path: Path) -> None:
    import timm

    vit = timm.create_model("vit_large_patch16_224", num_classes=0)
    dec = MAEDecoder(1024, 196, 768, 512, 8, 16, qkv_bias=True, norm_eps=1e-6)
    mae_pth.write(path, vit.state_dict(), DecoderWeights(dec.state_dict(), 16, 1e-6, "hwc"), 16)


def _hf_dinov2_small(folder: Path) -> None:
    from transformers import Dinov2Config, Dinov2Model

    Dinov2Model(Dinov2Config(hidden_size=384, num_attention_heads=6, image_size=518, patch_size=14)).save_pretrained(
        folder)  # facebook/dinov2-small's shape


def _dino_vits16(path: Path) -> None:
    import timm

    vit = timm.create_model("vit_small_patch16_224", num_classes=0)
    head = DINOHead(384, 65536, 2048, 256)
    dino.write(path, vit.state_dict(), DinoHeadWeights(head.state_dict(), torch.zeros(1, 65536)))


# name -> (writer, file name, run settings as docs/backbones.md gives them)
FAMILIES: dict[str, tuple[Callable[[Path], None], str, list[str]]] = {
    "b0 (bundled, ViT-Ti/8, 64 px, MAE)": (lambda p: None, "", []),
    "MAE ViT-B/16 (facebook/vit-mae-base, HF)": (_hf_vit_mae_base, "vit-mae-base", ["data.image_size=224"]),
    "RETFound ViT-L/16 (MAE .pth)": (_retfound, "RETFound_mae.pth", ["data.image_size=224"]),
    "DINOv2 ViT-S/14 (facebook/dinov2-small, HF) at 224 px": (
        _hf_dinov2_small, "dinov2-small",
        ["data.image_size=224", "pretext.method=dino", "pretext.views.local_size=98"]),
    "DINO ViT-S/16 (DINO checkpoint with head)": (
        _dino_vits16, "dino_vits16.pth", ["data.image_size=224", "pretext.method=dino", "pretext.views.local_size=96"]),
}


def _saved_bytes(loss_fn: Callable[[], torch.Tensor], module: torch.nn.Module) -> int:
    """Bytes of the tensors autograd keeps for the backward pass, each storage once, weights left out."""
    weights = {p.data_ptr() for p in module.parameters()} | {b.data_ptr() for b in module.buffers()}
    seen: set[int] = set()
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        ptr = t.untyped_storage().data_ptr()
        if ptr not in seen and ptr not in weights:
            seen.add(ptr)
            total += t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_fn()
    loss.backward()
    module.zero_grad(set_to_none=True)
    return total


def cost(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="families-"))
    rows = []
    for name, (write, file, sets) in FAMILIES.items():
        ckpt = []
        if file:
            write(work / file)
            ckpt = [f"backbone.checkpoint={work / file}"]
            if "RETFound" in name:
                ckpt.append("backbone.decoder_heads=16")
        cfg = load_config(None, [*ckpt, *sets, f"device={args.device}", f"threads={args.threads}",
                                 "pretext.batch_size=64", "finetune.batch_size=64"])
        ctx = prepare_context(cfg, log=lambda s: None)
        budget = matched_budget(ctx)
        run = build_run_model(ctx, seed=0)
        task = get_pretext(cfg.pretext)(ctx.backbone, run.vit, cfg.pretext).to(ctx.device)
        gen = torch.Generator(device=ctx.device).manual_seed(0)
        n = 2
        idx = torch.arange(n)
        pre_act = _saved_bytes(lambda: task.loss(ctx.batch("train", idx), gen), task) / n  # noqa: B023
        model = ctx.task.build_model(run.vit).to(ctx.device)
        inputs, targets = ctx.task.train_batch(ctx, idx, None)
        ft_act = _saved_bytes(lambda: ctx.task.loss(model(inputs), targets), model) / n  # noqa: B023
        weights = sum(p.numel() for p in ctx.backbone.model.parameters())
        head = sum(p.numel() for g in task.head_param_groups(1.0) for p in g["params"])
        frozen_head = sum(p.numel() for p in task.parameters()) - head - sum(p.numel() for p in run.vit.parameters())
        images = images_per_epoch(len(ctx.data["train"]), 64)
        row = {"family": name, "input": ctx.backbone.image_size, "encoder_params": weights,
               "pretext_head": task.head_source, "head_params": head + max(frozen_head, 0),
               "tpp_gflops_img": budget["pretext_flops_per_image_step"] / 1e9,
               "ft_gflops_img": budget["finetune_flops_per_image_step"] / 1e9,
               "tpp_act_mb_img": pre_act / 2**20, "ft_act_mb_img": ft_act / 2**20,
               "tpp_mem_gb_b64": (4 * (weights + head + max(frozen_head, 0)) + 64 * pre_act) / 2**30,
               "ft_mem_gb_b64": (4 * weights + 64 * ft_act) / 2**30,
               "tpp_epoch_s": budget["pretext_flops_per_image_step"] * images / args.rate,
               "ft_epoch_s": budget["finetune_flops_per_image_step"] * images / args.rate}
        if args.device == "cuda":
            row.update(_measure_cuda(ctx, task, model, args.steps))
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n| family | input px | pretext head | encoder params | head params | GFLOPs/img TPP / FT | "
          f"act. MB/img TPP / FT (fp32) | GB at batch 64 TPP / FT (fp32) | s/epoch TPP / FT at {args.rate / 1e12:g} "
          "TFLOP/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['family']} | {r['input']} | {r['pretext_head']} | {r['encoder_params'] / 1e6:.1f} M | "
              f"{r['head_params'] / 1e6:.1f} M | {r['tpp_gflops_img']:.1f} / {r['ft_gflops_img']:.1f} | "
              f"{r['tpp_act_mb_img']:.0f} / {r['ft_act_mb_img']:.0f} | {r['tpp_mem_gb_b64']:.1f} / "
              f"{r['ft_mem_gb_b64']:.1f} | {r['tpp_epoch_s']:.2f} / {r['ft_epoch_s']:.2f} |")


def _measure_cuda(ctx, task, model, steps: int) -> dict:
    """Seconds per step and peak memory of ``steps`` training steps of each stage at batch 64 (bf16 autocast)."""
    out = {}
    idx = torch.arange(64) % len(ctx.data["train"])
    gen = torch.Generator(device=ctx.device).manual_seed(0)
    inputs, targets = ctx.task.train_batch(ctx, idx, None)
    for stage, fn, module in (("tpp", lambda: task.loss(ctx.batch("train", idx), gen), task),
                              ("ft", lambda: ctx.task.loss(model(inputs), targets), model)):
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            with torch.autocast("cuda", torch.bfloat16):
                loss = fn()
            loss.backward()
            module.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        out[f"{stage}_s_per_step_b64"] = (time.perf_counter() - start) / steps
        out[f"{stage}_peak_gb_b64"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    e = sub.add_parser("exactness")
    e.add_argument("--seeds", type=int, default=3)
    e.add_argument("--limit", type=int, default=0, help="images per split (0 = all)")
    e.add_argument("--pretext-epochs", type=int, default=6)
    e.add_argument("--finetune-epochs", type=int, default=6)
    e.add_argument("--threads", type=int, default=2)
    c = sub.add_parser("cost")
    c.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    c.add_argument("--threads", type=int, default=2)
    c.add_argument("--steps", type=int, default=20, help="cuda: timed steps per stage")
    c.add_argument("--rate", type=float, default=200e12,
                   help="assumed sustained FLOP/s for the time estimate (default 200e12: about a quarter of an "
                        "H100's or H200's dense bf16 peak)")
    return p.parse_args()


if __name__ == "__main__":
    a = parse()
    torch.set_num_threads(getattr(a, "threads", 2))
    if a.what == "exactness":
        exactness(a)
    else:
        cost(a)
