"""Print the Markdown table of target-parameter methods with their parameter counts on a backbone.

    python benchmarks/target_param_counts.py [--set peft.r=4 ...]

Counts come from attaching each method (with the config's `peft` section, defaults unless overridden) to
the configured backbone (default: the bundled b0); nothing is trained.
"""

from __future__ import annotations

import argparse

from tppeft.backbones import build_backbone
from tppeft.config import load_config
from tppeft.targets import get_target_method, list_target_methods, method_class

# Table order: peft's families first, then the methods written here; then any other registered method.
ORDER = ["lora", "loha", "lokr", "ia3", "adapter", "adaptformer", "vpt_shallow", "vpt_deep", "ssf", "bitfit",
         "layernorm"]
# Variants worth a row of their own: (label, method, extra peft settings, description).
VARIANTS = [("lora + use_rslora", "lora", {"use_rslora": True}, "LoRA with the rank-stabilised scale alpha/sqrt(r)"),
            ("lora + use_dora", "lora", {"use_dora": True}, "DoRA: LoRA plus a magnitude vector per linear")]


def rows(overrides: list[str]) -> tuple[list[list[str]], dict]:
    cfg = load_config(None, overrides)
    backbone = build_backbone(cfg.backbone, cfg.data.image_size)
    total = sum(p.numel() for p in backbone.model.parameters())
    names = [m for m in ORDER if m in list_target_methods()] + [m for m in list_target_methods() if m not in ORDER]
    entries = [(m, m, {}, method_class(m).description) for m in names]
    for variant in reversed(VARIANTS):
        entries.insert(names.index(variant[1]) + 1, variant)
    out = []
    for label, method, extra, description in entries:
        peft = cfg.peft.model_copy(update={"method": method, **extra})
        handle, names = get_target_method(peft).attach(backbone.fresh_model())
        params = dict(handle.vit.named_parameters())
        count = sum(params[n].numel() for n in names)
        cls = method_class(method)
        out.append([f"`{label}`", f"{count:,}", f"{100 * count / total:.2f}%", "yes" if cls.mergeable else "no",
                    description])
    return out, {"backbone": cfg.backbone.name, "checkpoint": cfg.backbone.checkpoint, "params": total}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args()
    table, info = rows(args.set)
    print(f"Backbone {info['backbone']} from {info['checkpoint']}: {info['params']:,} parameters.\n")
    print("| method | target params | % of backbone | mergeable | what is trained |")
    print("|---|---|---|---|---|")
    for r in table:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
