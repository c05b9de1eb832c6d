"""The target-parameter contract (files, checks, registry) and LoRA's own options; every method's shared
behaviour is in test_targets_methods.py."""

import json

import pytest
import torch
from peft import PeftModel

from tppeft.backbones import build_backbone
from tppeft.config import BackboneConfig, PeftConfig, load_config
from tppeft.targets import TargetParamError, get_target_method, list_target_methods, method_class
from tppeft.targets.base import META_FILE, TENSORS_FILE
from tppeft.targets.lora import target_modules_regex


def _attached(b0, identity=True, **kw):
    vit = b0.fresh_model()
    method = get_target_method(PeftConfig(**kw), b0.identity if identity else None)
    handle, names = method.attach(vit)
    return vit, method, handle, names


def _perturb(vit, names):
    g = torch.Generator().manual_seed(0)
    params = dict(vit.named_parameters())
    with torch.no_grad():
        for n in names:
            params[n].add_(torch.randn(params[n].shape, generator=g) * 0.05)


def test_lora_injects_on_chosen_linears_only(b0):
    vit, _, _, names = _attached(b0, targets=["qkv"], r=4)
    assert len(names) == 12 * 2 and all(".attn.qkv.lora_" in n for n in names)
    assert {n for n, p in vit.named_parameters() if p.requires_grad} == set(names)
    vit, _, _, names = _attached(b0)
    assert len(names) == 12 * 4 * 2
    assert not any("patch_embed" in n or "head" in n for n in names)  # patch_embed.proj must not match


def test_target_presets_expand_to_block_linears(b0):
    assert load_config(None, ["peft.targets=attention"]).peft.targets == ["qkv", "proj"]
    assert load_config(None, ["peft.targets=[mlp]"]).peft.targets == ["fc1", "fc2"]
    assert load_config(None, ["peft.targets=all"]).peft.targets == ["qkv", "proj", "fc1", "fc2"]
    _, _, _, names = _attached(b0, targets=["attention"])
    assert {n.split(".")[3] for n in names} == {"qkv", "proj"} and not any("patch_embed" in n for n in names)


def test_lora_b_starts_at_zero_so_outputs_are_unchanged(b0):
    vit, *_ = _attached(b0)
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(vit(x), b0.model(x), atol=1e-6)


def test_rslora_and_dora_options_reach_peft(b0):
    _, _, h, _ = _attached(b0, r=4, alpha=8, use_rslora=True)
    layer = h.vit.blocks[0].attn.qkv
    assert layer.scaling["default"] == pytest.approx(8 / 4 ** 0.5)  # alpha / sqrt(r), not alpha / r
    _, _, h, names = _attached(b0, r=4, use_dora=True)
    magnitudes = [n for n in names if "lora_magnitude_vector" in n]
    assert len(magnitudes) == 12 * 4  # DoRA adds one magnitude vector per adapted linear


def test_saved_files_are_the_documented_format(b0, tmp_path):
    vit, method, handle, names = _attached(b0)
    _perturb(vit, names)
    method.save(handle, tmp_path)
    meta = json.loads((tmp_path / META_FILE).read_text())
    assert meta["method"] == "lora" and meta["hyper_parameters"]["r"] == 8
    assert meta["backbone"]["sha256"] == b0.identity["sha256"] and meta["backbone"]["name"] == b0.identity["name"]
    assert meta["num_params"] == sum(p.numel() for n, p in vit.named_parameters() if n in names)
    assert set(meta["tensors"]) == set(names) and len(meta["sha256"]) == 64
    assert (tmp_path / TENSORS_FILE).is_file()
    assert (tmp_path / "adapter_model.safetensors").is_file() and (tmp_path / "adapter_config.json").is_file()


def test_loading_mismatched_parameters_is_an_error(b0, tmp_path):
    vit, method, handle, _ = _attached(b0, r=8)
    method.save(handle, tmp_path)
    _, m4, h4, _ = _attached(b0, r=4)
    with pytest.raises(TargetParamError, match="r=8"):
        m4.load(h4, tmp_path)
    _, md, hd, _ = _attached(b0, use_dora=True)
    with pytest.raises(TargetParamError, match="use_dora"):
        md.load(hd, tmp_path)
    with pytest.raises(TargetParamError, match=f"expected {META_FILE}"):
        m4.load(h4, tmp_path / "missing")


def test_a_changed_file_or_another_backbone_is_an_error(b0, tmp_path):
    vit, method, handle, _ = _attached(b0)
    method.save(handle, tmp_path)
    other = dict(b0.identity, sha256="0" * 64)
    m2 = get_target_method(PeftConfig(), other)
    h2, _ = m2.attach(b0.fresh_model())
    with pytest.raises(TargetParamError, match="do not fit this run's backbone"):
        m2.load(h2, tmp_path)
    data = bytearray((tmp_path / TENSORS_FILE).read_bytes())
    data[-1] ^= 0xFF
    (tmp_path / TENSORS_FILE).write_bytes(bytes(data))
    with pytest.raises(TargetParamError, match="checksum"):
        method.load(handle, tmp_path)


def test_a_folder_written_by_peft_alone_still_loads(b0, tmp_path):
    """Folders that hold only peft's adapter files (e.g. written by peft itself) load with the same checks."""
    vit, method, handle, names = _attached(b0)
    _perturb(vit, names)
    handle.peft_model.save_pretrained(str(tmp_path))
    vit2, method2, handle2, _ = _attached(b0)
    method2.load(handle2, tmp_path)
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(vit(x), vit2(x))
    _, m4, h4, _ = _attached(b0, r=4)
    with pytest.raises(TargetParamError, match="r=8"):
        m4.load(h4, tmp_path)


def test_saved_files_load_with_peft_into_the_plain_backbone(b0, tmp_path):
    vit, method, handle, names = _attached(b0)
    _perturb(vit, names)
    method.save(handle, tmp_path)
    plain = build_backbone(BackboneConfig()).model
    loaded = PeftModel.from_pretrained(plain, str(tmp_path))
    x = torch.randn(3, 3, 64, 64)
    assert torch.equal(loaded(x), vit(x))


def test_loading_into_a_backbone_of_another_shape_is_an_error(tmp_path):
    small = build_backbone(BackboneConfig(name="vit_small_patch16_224", checkpoint=None), image_size=32)
    vit = small.fresh_model()
    method = get_target_method(PeftConfig())
    handle, _ = method.attach(vit)
    method.save(handle, tmp_path)
    tiny = build_backbone(BackboneConfig(checkpoint=None), image_size=32)
    vit2 = tiny.fresh_model()
    handle2, _ = method.attach(vit2)
    with pytest.raises(TargetParamError, match="does not fit"):
        method.load(handle2, tmp_path)
    # with identities recorded, the backbone's name already tells them apart
    m_small = get_target_method(PeftConfig(), small.identity)
    h_small, _ = m_small.attach(small.fresh_model())
    m_small.save(h_small, tmp_path / "with_identity")
    m_tiny = get_target_method(PeftConfig(), tiny.identity)
    h_tiny, _ = m_tiny.attach(tiny.fresh_model())
    with pytest.raises(TargetParamError, match="vit_small_patch16_224"):
        m_tiny.load(h_tiny, tmp_path / "with_identity")


def test_regex_registry_and_unknown_method():
    assert target_modules_regex(["qkv", "fc2"]) == r"blocks\.\d+\.(attn\.qkv|mlp\.fc2)"
    assert set(list_target_methods()) == {"lora", "loha", "lokr", "ia3", "adapter", "adaptformer", "vpt_shallow",
                                          "vpt_deep", "ssf", "bitfit", "layernorm"}
    assert all(method_class(name).name == name for name in list_target_methods())
    with pytest.raises(TargetParamError, match="unknown"):
        get_target_method(PeftConfig(method="nope"))
