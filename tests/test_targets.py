import pytest
import torch
from peft import PeftModel

from tppeft.backbones import build_backbone
from tppeft.config import BackboneConfig, PeftConfig
from tppeft.targets import TargetParamError, get_target_method
from tppeft.targets.lora import target_modules_regex


def _attached(b0, **kw):
    vit = b0.fresh_model()
    method = get_target_method(PeftConfig(**kw))
    handle, names = method.attach(vit)
    return vit, method, handle, names


def _perturb(vit):
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n, p in vit.named_parameters():
            if "lora_" in n:
                p.add_(torch.randn(p.shape, generator=g) * 0.05)


def test_lora_injects_on_chosen_linears_only(b0):
    vit, _, _, names = _attached(b0, targets=["qkv"], r=4)
    assert len(names) == 12 * 2 and all(".attn.qkv.lora_" in n for n in names)
    assert {n for n, p in vit.named_parameters() if p.requires_grad} == set(names)
    vit, _, _, names = _attached(b0)
    assert len(names) == 12 * 4 * 2
    assert not any("patch_embed" in n or "head" in n for n in names)  # patch_embed.proj must not match


def test_lora_b_starts_at_zero_so_outputs_are_unchanged(b0):
    vit, *_ = _attached(b0)
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(vit(x), b0.model(x), atol=1e-6)


def test_only_target_parameters_receive_gradients(b0):
    vit, _, _, names = _attached(b0)
    _perturb(vit)
    vit(torch.randn(2, 3, 64, 64)).sum().backward()
    got = {n for n, p in vit.named_parameters() if p.grad is not None}
    assert got == set(names)


def test_save_load_round_trip_is_bit_exact(b0, tmp_path):
    vit, method, handle, names = _attached(b0)
    _perturb(vit)
    method.save(handle, tmp_path)
    assert (tmp_path / "adapter_model.safetensors").is_file() and (tmp_path / "adapter_config.json").is_file()
    vit2, method2, handle2, _ = _attached(b0)
    method2.load(handle2, tmp_path)
    a, b = dict(vit.named_parameters()), dict(vit2.named_parameters())
    assert all(torch.equal(a[n], b[n]) for n in names)
    x = torch.randn(3, 3, 64, 64)
    assert torch.equal(vit(x), vit2(x))


def test_saved_files_load_with_peft_into_the_plain_backbone(b0, tmp_path):
    vit, method, handle, _ = _attached(b0)
    _perturb(vit)
    method.save(handle, tmp_path)
    plain = build_backbone(BackboneConfig()).model
    loaded = PeftModel.from_pretrained(plain, str(tmp_path))
    x = torch.randn(3, 3, 64, 64)
    assert torch.equal(loaded(x), vit(x))


def test_loading_mismatched_parameters_is_an_error(b0, tmp_path):
    vit, method, handle, _ = _attached(b0, r=8)
    method.save(handle, tmp_path)
    _, m4, h4, _ = _attached(b0, r=4)
    with pytest.raises(TargetParamError, match="r=8"):
        m4.load(h4, tmp_path)
    with pytest.raises(TargetParamError, match="expected adapter_config.json"):
        m4.load(h4, tmp_path / "missing")


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


def test_regex_and_unknown_method():
    assert target_modules_regex(["qkv", "fc2"]) == r"blocks\.\d+\.(attn\.qkv|mlp\.fc2)"
    with pytest.raises(TargetParamError, match="unknown"):
        get_target_method(PeftConfig(method="nope"))
