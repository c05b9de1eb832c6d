"""Every target-parameter method, the same checks: what trains, what is saved, what merges, and that a
few TPP steps on real images lower the pretext loss."""

import pytest
import torch
from conftest import BREAST
from peft import PeftModel

from tppeft.backbones import build_backbone
from tppeft.config import BackboneConfig, PeftConfig, PretextConfig
from tppeft.data import load_medmnist, resize_images, to_model_input
from tppeft.pretext import get_pretext
from tppeft.targets import TargetParamError, get_target_method, list_target_methods, method_class
from tppeft.targets.base import META_FILE, TENSORS_FILE
from tppeft.targets.peft_backed import PeftBackedMethod

METHODS = sorted(list_target_methods())
PEFT_METHODS = [m for m in METHODS if issubclass(method_class(m), PeftBackedMethod)]
MERGE_TOLERANCE = 1e-4  # float32 rounding of folding the method into the weights


def attach(b0, method, seed=0, identity=True, **kw):
    vit = b0.fresh_model()
    torch.manual_seed(seed)
    m = get_target_method(PeftConfig(method=method, **kw), b0.identity if identity else None)
    handle, names = m.attach(vit)
    return vit, m, handle, names


def perturb(vit, names, seed=0, scale=0.05):
    g = torch.Generator().manual_seed(seed)
    params = dict(vit.named_parameters())
    with torch.no_grad():
        for n in names:
            params[n].add_(torch.randn(params[n].shape, generator=g) * scale)


def images(n=2, seed=1):
    return torch.randn(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def grads(vit):
    return {n: p.grad for n, p in vit.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("method", METHODS)
def test_only_target_parameters_train_and_gradients_flow_from_the_init(b0, method):
    vit, _, _, names = attach(b0, method)
    assert names and {n for n, p in vit.named_parameters() if p.requires_grad} == set(names)
    x = images()
    vit(x).pow(2).mean().backward()
    first = grads(vit)
    assert set(first) == set(names)  # nothing else receives a gradient
    assert any(g.abs().sum() > 0 for g in first.values())  # zero-initialised parts still let gradients in
    # after one step from the usual init, every target tensor receives a gradient
    with torch.no_grad():
        for p in vit.parameters():
            if p.grad is not None:
                p.sub_(p.grad.sign() * 1e-2)
                p.grad = None
    vit(x).pow(2).mean().backward()
    dead = [n for n, g in grads(vit).items() if not g.abs().sum() > 0]
    assert not dead, dead


@pytest.mark.parametrize("method", METHODS)
def test_save_load_round_trip_gives_identical_outputs(b0, method, tmp_path):
    vit, m, handle, names = attach(b0, method)
    perturb(vit, names)
    m.save(handle, tmp_path)
    assert (tmp_path / TENSORS_FILE).is_file() and (tmp_path / META_FILE).is_file()
    assert (tmp_path / "adapter_config.json").is_file() == (method in PEFT_METHODS)
    vit2, m2, handle2, _ = attach(b0, method, seed=1)  # another init, overwritten by the load
    x = images()
    vit.eval()
    vit2.eval()
    assert not torch.equal(vit(x), vit2(x))
    m2.load(handle2, tmp_path)
    assert torch.equal(vit(x), vit2(x))


@pytest.mark.parametrize("method", PEFT_METHODS)
def test_peft_methods_load_with_peft_alone(b0, method, tmp_path):
    vit, m, handle, names = attach(b0, method)
    perturb(vit, names)
    m.save(handle, tmp_path)
    plain = PeftModel.from_pretrained(build_backbone(BackboneConfig()).model, str(tmp_path))
    x = images()
    assert torch.equal(plain(x), vit(x))


@pytest.fixture(scope="module")
def small():
    """A ViT of another width (384) and input size: every method's tensors differ in shape on it."""
    return build_backbone(BackboneConfig(name="vit_small_patch16_224", checkpoint=None), image_size=32)


@pytest.mark.parametrize("method", METHODS)
def test_loading_another_method_or_another_shape_is_an_error(b0, small, method, tmp_path):
    vit, m, handle, _ = attach(b0, method)
    m.save(handle, tmp_path)
    other = "adapter" if method != "adapter" else "lora"
    _, mo, ho, _ = attach(b0, other)
    with pytest.raises(TargetParamError, match=f"holds '{method}'"):
        mo.load(ho, tmp_path)
    ms = get_target_method(PeftConfig(method=method))  # no identity: only the tensors can tell
    hs, names = ms.attach(small.fresh_model())
    before = {n: p.detach().clone() for n, p in hs.vit.named_parameters() if n in names}
    with pytest.raises(TargetParamError, match="does not fit"):
        ms.load(hs, tmp_path)
    after = dict(hs.vit.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in names)  # nothing half-loaded


@pytest.mark.parametrize("method", METHODS)
def test_merge_gives_a_plain_timm_model_with_the_same_outputs(b0, method):
    vit, m, handle, names = attach(b0, method)
    perturb(vit, names)
    vit.eval()
    x = images()
    adapted = vit(x)
    if not m.mergeable:
        with pytest.raises(TargetParamError, match="cannot be merged"):
            m.merge(handle)
        return
    merged = m.merge(handle)
    assert set(merged.state_dict()) == set(b0.model.state_dict())  # plain timm keys, nothing extra
    assert (merged(x) - adapted).abs().max() < MERGE_TOLERANCE
    assert torch.equal(vit(x), adapted)  # the run's own model is left as it was


@pytest.fixture(scope="module")
def real_batch(b0):
    ds = load_medmnist(BREAST, limit=16)
    return to_model_input(resize_images(ds["train"].images, 64), torch.tensor(b0.mean), torch.tensor(b0.std))


@pytest.mark.parametrize("method", METHODS)
def test_a_few_tpp_steps_lower_the_pretext_loss_on_real_images(b0, method, real_batch):
    """From the usual init (zero-initialised parts included), 3 AdamW steps on the target parameters alone
    lower the MAE loss of a fixed real batch with fixed masks by over 3%; the pretrained decoder stays frozen."""
    vit, *_ = attach(b0, method)
    cfg = PretextConfig()
    task = get_pretext(cfg)(b0, vit, cfg)
    params = [p for p in vit.parameters() if p.requires_grad]

    def fixed_loss():
        return task.loss(real_batch, torch.Generator().manual_seed(123))

    with torch.no_grad():
        before = float(fixed_loss())
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0)
    for _ in range(3):
        opt.zero_grad()
        fixed_loss().backward()
        opt.step()
    with torch.no_grad():
        after = float(fixed_loss())
    assert after < before * 0.97, (method, before, after)
