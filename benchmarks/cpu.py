"""CPU throughput: the tool's TPP and fine-tuning steps against the plain loop a researcher writes.

The plain loop: timm + peft LoRA + a torch DataLoader over PIL images with torchvision transforms
(RandomResizedCrop, flip, ToTensor, Normalize), fp32. The tool: data resized once and kept as tensors,
batched augmentation, the same model. Both run the same model, batch and number of steps in this process.

    python benchmarks/cpu.py [--steps 10] [--batch 32] [--threads N]

Ends with one line per case: ``CASE STEP tool_img_s=X plain_img_s=Y ratio=Z``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from tppeft.bundled import resolve
from tppeft.config import load_config
from tppeft.pretext import get_pretext
from tppeft.stages import build_run_model, prepare_context
from tppeft.tasks import Classifier, classification_loss


class PilDataset(Dataset):
    """Per-image PIL + torchvision pipeline, as in most research code."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, size: int):
        self.images, self.labels = images, labels
        self.tf = transforms.Compose([
            transforms.Grayscale(num_output_channels=3),
            transforms.RandomResizedCrop(size, scale=(0.6, 1.0)),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize([0.5] * 3, [0.5] * 3),
        ])

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.tf(Image.fromarray(self.images[i])), int(self.labels[i])


def timed(step, steps: int, batch: int) -> float:
    step()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    sets = ["device=cpu"] + ([f"threads={args.threads}"] if args.threads else [])
    cfg = load_config(None, sets)
    ctx = prepare_context(cfg, log=lambda s: None)
    n = len(ctx.data["train"])
    gen = torch.Generator().manual_seed(0)
    npz = np.load(resolve(cfg.data.path))
    loader = DataLoader(PilDataset(npz["train_images"], npz["train_labels"][:, 0], ctx.backbone.image_size),
                        batch_size=args.batch, shuffle=True, num_workers=0, drop_last=True)

    def batches():
        while True:
            yield from loader

    plain_iter = batches()
    results = []
    for stage in ("finetune", "pretext"):
        for kind in ("tool", "plain"):
            run = build_run_model(ctx, seed=0)
            if stage == "finetune":
                model = Classifier(run.vit, ctx.data.num_classes)
                params = run.target_params() + list(model.head.parameters())

                def loss_of(x, y, model=model):
                    return classification_loss(model(x), y, "multiclass")
            else:
                task = get_pretext(cfg.pretext)(ctx.backbone, run.vit, cfg.pretext)
                params = run.target_params()

                def loss_of(x, y, task=task):
                    return task.loss(x, gen)
            opt = torch.optim.AdamW(params, lr=1e-3)

            def step(kind=kind, loss_of=loss_of, opt=opt):
                if kind == "tool":
                    idx = torch.randint(0, n, (args.batch,), generator=gen)
                    x, y = ctx.batch("train", idx, gen), ctx.data["train"].labels[idx]
                else:
                    x, y = next(plain_iter)
                loss = loss_of(x, y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            results.append((stage, kind, timed(step, args.steps, args.batch)))
    print(f"threads={torch.get_num_threads()} batch={args.batch} steps={args.steps}")
    by = {(s, k): v for s, k, v in results}
    for stage in ("finetune", "pretext"):
        tool, plain = by[(stage, "tool")], by[(stage, "plain")]
        print(f"b0_64_cpu {stage} tool_img_s={tool:.1f} plain_img_s={plain:.1f} ratio={tool / plain:.2f}")


if __name__ == "__main__":
    main()
