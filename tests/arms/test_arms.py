"""Every arm from the command line on a tiny budget, and what makes each arm what it claims to be."""

import json
import math

import pytest
import torch
from conftest import tiny_config
from golden import check

from tppeft.arms import get_arm
from tppeft.cli import main
from tppeft.config import ConfigError, load_config
from tppeft.experiment.budget import matched_budget
from tppeft.experiment.builders import build_arm_model, lora_ranks
from tppeft.experiment.context import prepare_context
from tppeft.experiment.finetune_stage import finetune_stage
from tppeft.experiment.model import build_run_model

ALL_ARMS = ["baseline", "tpp", "baseline_matched", "eva", "linear_probe", "full_finetune"]
RUN_ARMS = [*ALL_ARMS, "tpp_featdistill"]  # and one tpp arm with another pretext task
# 32px input (b0's position embedding resampled) and LoRA on qkv only keep every arm to seconds.
SMALL = ["data.limit=32", "data.image_size=32", "peft.targets=[qkv]", "eva.batch_size=16", "threads=1"]


def small_config(**overrides):
    cfg, sets = tiny_config(**overrides)
    return load_config(None, sets + SMALL), sets + SMALL


@pytest.fixture(scope="module")
def all_arms(tmp_path_factory):
    out = tmp_path_factory.mktemp("arms") / "run"
    _, sets = small_config(arms=f"[{', '.join(RUN_ARMS)}]")
    assert main(["run", "-o", str(out), *[a for s in sets for a in ("--set", s)]]) == 0
    return out, json.loads((out / "summary.json").read_text())


@pytest.fixture(scope="module")
def ctx():
    cfg = load_config(None, small_config()[1] + ["eva.rho=1"])  # rho 1: every EVA layer keeps rank r
    return prepare_context(cfg, log=lambda s: None)


def test_every_arm_runs_from_the_cli_with_paired_seeds(all_arms):
    out, s = all_arms
    assert list(s["arms"]) == RUN_ARMS
    for arm in RUN_ARMS:
        runs = s["arms"][arm]["runs"]
        assert [r["seed"] for r in runs] == [0, 1] and all(r["backbone_unchanged"] for r in runs)
        assert all(0 <= r["test"]["auc"] <= 1 for r in runs)
        assert (out / "runs" / arm / "seed0" / "metrics.jsonl").is_file()
    others = [a for a in ALL_ARMS if a != "tpp"]
    assert set(s["paired"]) == {f"{t}-{a}" for t in ("tpp", "tpp_featdistill") for a in others}
    pretexts = {arm: s["arms"][arm]["runs"][0]["pretext"] for arm in RUN_ARMS}
    assert pretexts["tpp"]["method"] == "mae" and pretexts["tpp_featdistill"]["method"] == "featdistill"
    assert all(pretexts[a] is None for a in others)
    assert (out / "runs" / "tpp_featdistill" / "seed1" / "target_params").is_dir()
    ranks = s["arms"]["eva"]["runs"][0]["eva_ranks"]  # default rho 2: rank moves between layers, budget kept
    assert sum(ranks.values()) == 8 * 12 and max(ranks.values()) <= 16
    counts = {arm: s["arms"][arm]["runs"][0]["target_params"] for arm in ALL_ARMS}
    assert counts["linear_probe"] == 0
    assert counts["full_finetune"] == s["arms"]["full_finetune"]["runs"][0]["backbone_params"] > counts["baseline"]
    assert counts["baseline"] == counts["tpp"] == counts["baseline_matched"] > 0
    assert not (out / "runs" / "linear_probe" / "seed0" / "finetuned" / "adapter_model.safetensors").exists()
    assert (out / "runs" / "eva" / "seed0" / "finetuned" / "adapter_model.safetensors").is_file()


def test_every_number_equals_the_recorded_one(all_arms):
    assert check("arms", all_arms[0]) == []


def test_baseline_matched_gets_the_documented_extra_epochs(all_arms):
    _, s = all_arms
    budget = s["baseline_matched"]
    ratio = budget["tpp_stage_in_finetune_epochs"]
    # the rule: ceil(pretext epochs x TPP FLOPs per epoch / fine-tuning FLOPs per epoch)
    assert ratio == pytest.approx(1 * budget["pretext_flops_per_epoch"] / budget["finetune_flops_per_epoch"])
    assert budget["extra_epochs"] == math.ceil(ratio) >= 1
    assert s["arms"]["baseline_matched"]["finetune_epochs"] == 1 + budget["extra_epochs"]
    assert all(s["arms"][a]["finetune_epochs"] == 1 for a in ALL_ARMS if a != "baseline_matched")
    lines = [json.loads(x) for x in (all_arms[0] / "runs" / "baseline_matched" / "seed0" / "metrics.jsonl")
             .read_text().splitlines()]
    assert max(x["epoch"] for x in lines if "epoch" in x) == 1 + budget["extra_epochs"]


def test_flop_counts_match_a_hand_estimate(ctx):
    b = matched_budget(ctx)
    vit = ctx.backbone.model
    tokens = vit.patch_embed.num_patches + 1
    linear_params = sum(m.weight.numel() for m in vit.blocks.modules() if isinstance(m, torch.nn.Linear))
    forward = 2 * linear_params * tokens  # multiply-adds of the block linears, the bulk of a ViT forward
    # a fine-tuning step is one forward and a backward to the inputs (frozen weights) + the LoRA gradients
    assert 2.0 * forward < b["finetune_flops_per_image_step"] < 3.5 * forward
    # MAE with half the patches hidden: the encoder sees about half the tokens, plus a decoder
    assert b["pretext_flops_per_image_step"] < b["finetune_flops_per_image_step"]
    fixed = prepare_context(load_config(None, small_config()[1] + ["baseline_matched.extra_epochs=3"]),
                            log=lambda s: None)
    assert matched_budget(fixed)["extra_epochs"] == 3


def test_eva_init_is_data_driven_deterministic_and_differs_from_lora(ctx):
    eva_a, info = build_arm_model(ctx, get_arm("eva"), seed=0)
    eva_b, _ = build_arm_model(ctx, get_arm("eva"), seed=0)
    plain = build_run_model(ctx, seed=0)
    sa, sb = (dict(m.vit.named_parameters()) for m in (eva_a, eva_b))
    plain_params = dict(plain.vit.named_parameters())
    a_names = [n for n in eva_a.target_names if "lora_A" in n]
    assert a_names and all(torch.equal(sa[n], sb[n]) for n in eva_a.target_names)
    assert all(not torch.any(sa[n.replace("lora_A", "lora_B")]) for n in a_names)  # B starts at zero
    assert all(sa[n].shape == plain_params[n].shape and not torch.allclose(sa[n], plain_params[n])
               for n in a_names)
    # EVA's A rows are orthonormal principal directions of the layer inputs, unlike a random init
    a = sa[a_names[0]].detach()
    assert torch.allclose(a @ a.T, torch.eye(a.shape[0]), atol=1e-4)
    assert info["eva_ranks"] == lora_ranks(eva_a.vit) == {f"blocks.{i}.attn.qkv": ctx.cfg.peft.r for i in range(12)}
    assert all(p.requires_grad == (n in eva_a.target_names) for n, p in eva_a.vit.named_parameters())


def test_tpp_variant_arms_name_a_known_pretext(tmp_path, capsys):
    assert load_config(None, ["arms=[baseline, tpp_simclr]"]).arms == ["baseline", "tpp_simclr"]
    with pytest.raises(ConfigError, match="unknown arm"):
        load_config(None, ["arms=[baseline, tpp-simclr]"])
    assert main(["run", "-o", str(tmp_path / "x"), "--set", "arms=[baseline, tpp_nosuch]"]) == 2
    assert "tpp_nosuch" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_eva_needs_lora():
    with pytest.raises(ConfigError, match="peft.method=lora"):
        load_config(None, ["arms=[baseline, eva]", "peft.method=ia3"])


def test_linear_probe_trains_only_the_head(ctx, tmp_path):
    run, _ = build_arm_model(ctx, get_arm("linear_probe"), seed=0)
    before = {k: v.clone() for k, v in run.vit.state_dict().items()}
    assert run.target_params() == [] and not any(p.requires_grad for p in run.vit.parameters())
    finetune_stage(ctx, run, 0, tmp_path, "t")
    assert all(torch.equal(before[k], v) for k, v in run.vit.state_dict().items())
    head = (tmp_path / "finetuned" / "head.safetensors")
    assert head.is_file() and sorted(p.name for p in head.parent.iterdir()) == ["head.safetensors"]


def test_full_finetune_changes_its_copy_never_the_template(ctx, tmp_path):
    template = {k: v.clone() for k, v in ctx.backbone.model.state_dict().items()}
    run, _ = build_arm_model(ctx, get_arm("full_finetune"), seed=0)
    assert run.lr_scale == ctx.cfg.full_finetune.lr_scale and len(run.target_params()) == len(template)
    finetune_stage(ctx, run, 0, tmp_path, "t")
    changed = [k for k, v in run.vit.state_dict().items() if not torch.equal(template[k], v)]
    assert len(changed) > len(template) // 2  # the copy trained
    assert all(torch.equal(template[k], v) for k, v in ctx.backbone.model.state_dict().items())
    assert not any(p.requires_grad for p in ctx.backbone.model.parameters())


def test_bundled_all_arms_recipe_lists_every_arm():
    from tppeft.bundled import bundled_configs

    cfg = load_config(bundled_configs()["all_arms_breastmnist"])
    assert set(ALL_ARMS) < set(cfg.arms) and cfg.seeds == 5 and cfg.threads == 1
