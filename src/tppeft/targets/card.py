"""The README.md beside saved target parameters: what they are, where they came from and how to load them.

It replaces the empty card peft's ``save_pretrained`` writes; the facts are those of ``target_params.json`` plus
what the stage that saved them knows (pretext task, data, losses)."""

from __future__ import annotations

from pathlib import Path

from tppeft.io import write_text

CARD_FILE = "README.md"


def model_card(meta: dict, facts: dict[str, str]) -> str:
    backbone = meta.get("backbone") or {}
    hp = ", ".join(f"{k}={v}" for k, v in (meta.get("hyper_parameters") or {}).items())
    lines = [f"# {meta['method']} target parameters (tppeft)", "",
             f"- method: `{meta['method']}`" + (f" ({hp})" if hp else ""),
             f"- parameters: {meta['num_params']:,}",
             f"- backbone: `{backbone.get('name', '?')}` from `{backbone.get('checkpoint') or 'timm'}`"
             + (f" (sha256 {str(backbone['sha256'])[:12]})" if backbone.get("sha256") else "")]
    lines += [f"- {key}: {value}" for key, value in facts.items()]
    lines += ["", "## Load", "", "```bash",
              "tppeft finetune --init THIS_FOLDER ...   # start fine-tuning from them",
              "tppeft export THIS_FOLDER -o OUT [--merged]   # adapter files or a merged timm checkpoint", "```",
              "", f"`target_params.json` holds the exact configuration; written by tppeft {meta['tppeft_version']}."]
    if meta["method"] in ("lora", "loha", "lokr", "ia3"):  # peft-backed: peft's own files are there too
        lines += ["The peft files (`adapter_config.json`, `adapter_model.safetensors`) load with "
                  "`peft.PeftModel.from_pretrained(timm_vit, THIS_FOLDER)`."]
    return "\n".join(lines) + "\n"


def write_model_card(directory: Path, meta: dict, facts: dict[str, str] | None = None) -> None:
    write_text(Path(directory) / CARD_FILE, model_card(meta, facts or {}))
