"""The EMA teacher: its update rule, what it tracks, and that it runs without touching the student."""

import copy

import pytest
import torch

from tppeft.config import PeftConfig, PretextConfig
from tppeft.pretext import get_pretext
from tppeft.pretext.ema import EMATeacher
from tppeft.targets import get_target_method

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture()
def dino(b0):
    torch.manual_seed(0)
    vit = b0.fresh_model()
    _, names = get_target_method(PeftConfig(targets=["qkv"])).attach(vit)
    cfg = PretextConfig(method="dino", dino={"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16})
    return get_pretext(cfg)(b0, vit, cfg), names


def test_teacher_tracks_target_params_and_head_only(dino):
    task, names = dino
    tracked = set(task.teacher.names)
    head = {f"head.{n}" for n, _ in task.student.head.named_parameters()}
    assert tracked == {f"vit.{n}" for n in names} | head
    assert not any(".blocks.0.attn.qkv.base_layer" in n or n == "vit.pos_embed" for n in tracked)


def test_ema_update_is_m_teacher_plus_one_minus_m_student(dino):
    task, _ = dino
    params = dict(task.student.named_parameters())
    with torch.no_grad():
        for n in task.teacher.names:
            params[n].add_(torch.randn_like(params[n]))
    before = {n: t.clone() for n, t in task.teacher.shadow().items()}
    frozen_before = {n: p.clone() for n, p in params.items() if n not in before}
    task.teacher.update(task.student, 0.9)
    for n, t in task.teacher.shadow().items():
        assert torch.allclose(t, 0.9 * before[n] + 0.1 * params[n].detach(), atol=1e-6), n
    assert all(torch.equal(params[n], p) for n, p in frozen_before.items())
    task.after_step()  # the task's own hook applies its configured momentum (0.99)
    t = task.teacher.shadow()
    n0 = task.teacher.names[0]
    expected = 0.99 * (0.9 * before[n0] + 0.1 * params[n0]) + 0.01 * params[n0]
    assert torch.allclose(t[n0], expected, atol=1e-6)


def test_teacher_forward_equals_a_copy_with_ema_weights_and_leaves_student_alone(dino):
    task, _ = dino
    params = dict(task.student.named_parameters())
    with torch.no_grad():
        for n in task.teacher.names:
            params[n].add_(0.05 * torch.randn_like(params[n]))
    x = torch.randn(2, 3, 64, 64)
    student_state = {n: p.clone() for n, p in params.items()}
    out = task.teacher(task.student, x)
    reference = copy.deepcopy(task.student)
    with torch.no_grad():
        ref_params = dict(reference.named_parameters())
        for n, t in task.teacher.shadow().items():
            ref_params[n].copy_(t)
        assert torch.allclose(out, reference(x), atol=1e-6)
        assert not torch.allclose(out, task.student(x), atol=1e-4)  # the student differs from its teacher
    assert all(torch.equal(p, student_state[n]) for n, p in params.items())


def test_new_teacher_is_an_exact_copy():
    m = torch.nn.Linear(3, 2)
    m.bias.requires_grad_(False)
    t = EMATeacher(m)
    assert t.names == ["weight"] and torch.equal(t.shadow()["weight"], m.weight)
    x = torch.randn(4, 3)
    assert torch.equal(t(m, x), m(x))
