"""Throughput: the tool's TPP (MAE) step and fine-tuning step against the plain loop a researcher writes.

The plain loop: a timm ViT + peft LoRA + a torch DataLoader over PIL images with torchvision transforms
(grey to 3 channels, RandomResizedCrop, horizontal flip, ToTensor, Normalize), AdamW, bf16 autocast on CUDA
(float32 on CPU), images copied to the device each step; no host read of the loss per step (the strongest
simple version). The tool: its own training loop (``tppeft.engine.train``) with the data kept on the device
as stored (uint8, 28 px), each batch converted and resized there, batched augmentation and masks there,
fused AdamW on CUDA and ``train.precision: auto``.
Both run the same model (same timm backbone, same LoRA, same MAE decoder), the same batch and the same number
of steps, one after the other in this process.

Cases: ``vit_b16_224`` (timm ``vit_base_patch16_224``, random init, which costs the same as pretrained, 224 px,
LoRA r=16 on qkv; MAE with 75% of the patches masked and a fresh 8-block 512-wide decoder) and ``b0_64`` (the
bundled b0 ViT-Tiny/8 at 64 px with the default config: LoRA r=8 on every block linear, b0's own MAE decoder,
50% masked). Data: bundled BreastMNIST.

    python benchmarks/throughput.py                                  # GPU: both cases, batch 256, 50 steps
    python benchmarks/throughput.py --device cpu --steps 3 --batch 8 --threads 2

On CUDA it also reports peak memory per step kind and the fraction of the card's bf16 matrix rate (measured
here with large matrix products) that each step reaches, counting 2x the forward FLOPs (frozen weights need no
weight gradients). It ends with one line per case and step: ``CASE STEP tool_img_s=X plain_img_s=Y ratio=Z``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode
from torchvision import transforms

from tppeft.bundled import resolve
from tppeft.config import load_config
from tppeft.engine import train
from tppeft.engine.devices import autocast, compile_blocks
from tppeft.experiment.context import prepare_context
from tppeft.experiment.model import build_run_model
from tppeft.pretext import get_pretext
from tppeft.tasks import Classifier, classification_loss

CASES = {
    "vit_b16_224": ["backbone.name=vit_base_patch16_224", "backbone.checkpoint=null", "backbone.pretrained=false",
                    "data.image_size=224", "peft.r=16", "peft.alpha=32", "peft.targets=[qkv]",
                    "pretext.mask_ratio=0.75", "pretext.decoder=fresh", "pretext.decoder_dim=512",
                    "pretext.decoder_depth=8", "pretext.decoder_heads=16"],
    "b0_64": [],
}


class PilDataset(Dataset):
    """Per-image PIL + torchvision pipeline, as in most research code."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, size: int, mean, std):
        self.images, self.labels = images, labels
        self.tf = transforms.Compose([
            transforms.Grayscale(num_output_channels=3),
            transforms.RandomResizedCrop(size, scale=(0.6, 1.0)),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(list(mean), list(std)),
        ])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.tf(Image.fromarray(self.images[i])), int(self.labels[i])


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(device: torch.device, dtype: torch.dtype, size: int, reps: int) -> float:
    """Measured FLOP/s of square matrix products (bf16 on CUDA: the card's matrix rate)."""
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * size ** 3 * reps / (time.perf_counter() - start)


def forward_flops(fn: Callable[[], torch.Tensor]) -> int:
    """FLOPs of one forward (matrix products and attention, as torch's flop counter counts them)."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn()
    return counter.get_total_flops()


def measure(run_steps: Callable[[int], None], steps: int, warmup: int, batch: int,
            device: torch.device) -> tuple[float, float | None]:
    """(images/s, peak device memory in MiB or None on CPU) of ``run_steps(steps)`` after a warm-up."""
    run_steps(warmup)
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    run_steps(steps)
    sync(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return steps * batch / seconds, peak


def plain_model(ctx, stage: str, cfg):
    """timm backbone + peft LoRA (+ head or MAE task) built the way a researcher would, with peft directly."""
    from peft import LoraConfig, inject_adapter_in_model

    vit = ctx.backbone.fresh_model()
    vit.requires_grad_(False)
    torch.manual_seed(0)
    inject_adapter_in_model(LoraConfig(r=cfg.peft.r, lora_alpha=cfg.peft.alpha, target_modules=list(cfg.peft.targets),
                                       lora_dropout=cfg.peft.dropout), vit)
    vit.to(ctx.device)
    if stage == "finetune":
        return Classifier(vit, ctx.data.num_classes).to(ctx.device)
    return get_pretext(cfg.pretext)(ctx.backbone, vit, cfg.pretext).to(ctx.device)


def bench_case(case: str, args: argparse.Namespace) -> list[tuple[str, float, float, dict]]:
    sets = [f"device={args.device}", *CASES[case]] + ([f"threads={args.threads}"] if args.threads else [])
    if args.compile:
        sets.append("train.compile=true")
    cfg = load_config(None, sets)
    ctx = prepare_context(cfg, log=lambda s: None)
    device, n = ctx.device, len(ctx.data["train"])
    npz = np.load(resolve(cfg.data.path))
    data = PilDataset(npz["train_images"], npz["train_labels"][:, 0], ctx.backbone.image_size, ctx.backbone.mean,
                      ctx.backbone.std)
    workers = args.workers if args.workers is not None else (8 if device.type == "cuda" else 0)
    loader = DataLoader(data, batch_size=args.batch, shuffle=True, drop_last=True, num_workers=workers,
                        pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    rows = []
    for stage in ("finetune", "pretext"):
        # the tool: its own loop over device-resident data
        run = build_run_model(ctx, seed=0)
        aug = torch.Generator(device=device).manual_seed(1)
        if stage == "finetune":
            model = ctx.task.build_model(run.vit).to(device)
            params = run.target_params() + list(model.head.parameters())

            def tool_loss(idx, model=model, aug=aug):
                inputs, targets = ctx.task.train_batch(ctx, idx % n, aug)
                return ctx.task.loss(model(inputs), targets)

            flops_model = model
            flops_fn = lambda m=model: m(ctx.batch("val", torch.arange(min(8, args.batch)) % len(ctx.data["val"])))
        else:
            task = get_pretext(cfg.pretext)(ctx.backbone, run.vit, cfg.pretext).to(device)
            params = run.target_params() + task.head_param_groups(cfg.pretext.lr)

            def tool_loss(idx, task=task, aug=aug):
                return task.loss(ctx.batch("train", idx % n, aug), aug)

            flops_model = task
            flops_fn = lambda t=task, g=aug: t.loss(
                ctx.batch("val", torch.arange(min(8, args.batch)) % len(ctx.data["val"])), g)
        with autocast(device, ctx.precision):
            flops = forward_flops(flops_fn) / min(8, args.batch)
        if cfg.train.compile:  # after counting: the counter does not see inside compiled code
            compile_blocks(flops_model)

        def tool_steps(k, params=params, tool_loss=tool_loss):
            train(params, tool_loss, k * args.batch, epochs=1, batch_size=args.batch, lr=1e-3, weight_decay=0.0,
                  warmup_epochs=0, generator=torch.Generator().manual_seed(0), log=lambda s: None,
                  precision=ctx.precision)

        tool_s, tool_mem = measure(tool_steps, args.steps, args.warmup, args.batch, device)
        del run, params, tool_loss, flops_model

        # the plain loop
        plain = plain_model(ctx, stage, cfg)
        if args.compile and stage == "finetune":
            plain = torch.compile(plain)
        elif args.compile:
            compile_blocks(plain)
        trainable = [p for p in plain.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(trainable, lr=1e-3, weight_decay=0.0)
        gen = torch.Generator(device=device).manual_seed(2)
        batches = iter(())

        def plain_steps(k, plain=plain, opt=opt, gen=gen, stage=stage):
            nonlocal batches
            for _ in range(k):
                try:
                    x, y = next(batches)
                except StopIteration:
                    batches = iter(loader)
                    x, y = next(batches)
                x = x.to(device, non_blocking=True)
                y = y.to(device, non_blocking=True)
                with autocast(device, ctx.precision):
                    loss = classification_loss(plain(x), y, "multiclass") if stage == "finetune" else plain.loss(x, gen)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

        plain_s, plain_mem = measure(plain_steps, args.steps, args.warmup, args.batch, device)
        del plain, opt
        info = {"flops_per_image": flops, "tool_mem": tool_mem, "plain_mem": plain_mem}
        rows.append((stage, tool_s, plain_s, info))
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--steps", type=int, default=50, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default: 10 on CUDA, 1 on CPU)")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: all cores)")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers of the plain loop "
                   "(default: 8 on CUDA, 0 on CPU, where workers would take the cores the model needs)")
    p.add_argument("--compile", action="store_true", help="compile both: the tool with train.compile, the plain "
                   "loop with torch.compile of its model (fine-tuning) or of its blocks (MAE)")
    args = p.parse_args()
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    if args.warmup is None:
        args.warmup = 10 if device.type == "cuda" else 1
    if device.type == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        rate, what = matmul_rate(device, torch.bfloat16, 8192, 50), "bf16"
        print(f"device: {torch.cuda.get_device_name(device)}; measured {what} matrix rate {rate / 1e12:.0f} TFLOP/s")
    else:
        rate, what = matmul_rate(device, torch.float32, 1024, 10), "fp32"
        print(f"device: cpu, {torch.get_num_threads()} threads; measured fp32 matrix rate {rate / 1e9:.1f} GFLOP/s")
    print(f"batch {args.batch}, {args.steps} timed steps after {args.warmup} warm-up"
          + (", compiled" if args.compile else ""))
    results = []
    for case in args.cases:
        for stage, tool_s, plain_s, info in bench_case(case, args):
            results.append((case, stage, tool_s, plain_s))
            fraction = lambda s, f=info["flops_per_image"]: 2 * f * s / rate  # noqa: E731
            mem = (f" peak_mib tool={info['tool_mem']:.0f} plain={info['plain_mem']:.0f}"
                   if info["tool_mem"] is not None else "")
            print(f"# {case} {stage}: forward {info['flops_per_image'] / 1e9:.2f} GFLOP/image; "
                  f"{what} matrix-rate fraction tool={fraction(tool_s):.1%} plain={fraction(plain_s):.1%}{mem}",
                  flush=True)
    for case, stage, tool_s, plain_s in results:
        print(f"{case} {stage} tool_img_s={tool_s:.1f} plain_img_s={plain_s:.1f} ratio={tool_s / plain_s:.2f}")


if __name__ == "__main__":
    main()
