"""Pre-train LoRA with tppeft, save it in peft's format, and load it with peft alone into the plain backbone.

The same files come out of the command line: `tppeft run` writes them to runs/tpp/seed<k>/target_params/ and
`tppeft pretrain` to DIR/target_params/ (beside tppeft's own format). Run:
python examples/load_with_peft.py DIR ADAPTERS_OUT [--epochs 2]   (DIR: any data layout tppeft reads)
"""

from __future__ import annotations

import argparse

import torch
from peft import PeftModel

import tppeft


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="images to pre-train on: a folder, a CSV manifest or an .npz")
    parser.add_argument("adapters", help="new folder for the adapter files")
    parser.add_argument("--backbone", default="bundled:b0", help="timm model name, checkpoint or bundled:b0")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args(argv)

    data = tppeft.load_data(args.data)
    model, _ = tppeft.pretrain(args.backbone, data, method="lora", epochs=args.epochs)
    model.save_pretrained(args.adapters)  # adapter_config.json + adapter_model.safetensors

    # Later, elsewhere: the plain backbone (for a hub model: timm.create_model(name, pretrained=True,
    # num_classes=0)) plus peft's loader; tppeft is needed here only to read the bundled checkpoint.
    loaded = PeftModel.from_pretrained(tppeft.load_backbone(args.backbone), args.adapters).eval()
    model.eval()
    x = torch.randn(2, 3, *model.patch_embed.img_size)
    with torch.no_grad():
        difference = float((loaded(x) - model(x)).abs().max())
    print(f"features of the loaded model differ from the pre-trained one by {difference:.2e}")
    return difference


if __name__ == "__main__":
    main()
