"""DINO's schedules over the TPP stage (teacher temperature warm-up, EMA momentum on a cosine, prototypes frozen
at the start): their values, and a task that follows them step by step."""

import math

import pytest
import torch
from conftest import BREAST

from tppeft.config import PeftConfig, PretextConfig, load_config
from tppeft.data import load_medmnist, resize_images, to_model_input
from tppeft.experiment.pretext_stage import PretextBuffers
from tppeft.options import ConfigError
from tppeft.pretext import get_pretext
from tppeft.pretext.dino.config import DinoConfig
from tppeft.pretext.dino.schedule import DinoSchedule
from tppeft.targets import get_target_method

pytestmark = pytest.mark.usefixtures("one_thread")


def test_the_schedules_values_step_by_step():
    d = DinoConfig(teacher_temp=0.07, warmup_teacher_temp=0.04, teacher_temp_warmup_epochs=2, momentum=0.996,
                   momentum_end=1.0, freeze_last_layer_epochs=1.5)
    s = DinoSchedule(d, steps_per_epoch=4, total_steps=21)
    assert [round(s.teacher_temp(i), 6) for i in (0, 4, 8, 20)] == [0.04, 0.055, 0.07, 0.07]
    assert s.momentum(0) == pytest.approx(0.996) and s.momentum(20) == pytest.approx(1.0)
    assert s.momentum(10) == pytest.approx(0.998)  # half-way along the cosine
    assert [s.last_layer_frozen(i) for i in (0, 5, 6)] == [True, True, False]
    fixed = DinoSchedule(DinoConfig(), 4, 21)  # nothing scheduled: the fixed values throughout
    assert {fixed.teacher_temp(i) for i in range(21)} == {0.04} and {fixed.momentum(i) for i in range(21)} == {0.99}
    assert not any(fixed.last_layer_frozen(i) for i in range(21)) and not DinoConfig().scheduled


def test_a_temperature_warm_up_needs_its_start_and_its_length():
    with pytest.raises(ConfigError, match="go together"):
        load_config(None, ["pretext.dino.warmup_teacher_temp=0.04"])
    with pytest.raises(ConfigError, match="go together"):
        load_config(None, ["pretext.dino.teacher_temp_warmup_epochs=2"])


@pytest.fixture(scope="module")
def batch(b0):
    ds = load_medmnist(BREAST, limit=4)
    return to_model_input(resize_images(ds["train"].images, 64), torch.tensor(b0.mean), torch.tensor(b0.std))


def build(b0, **dino):
    torch.manual_seed(0)
    vit = b0.fresh_model()
    _, names = get_target_method(PeftConfig()).attach(vit)
    cfg = PretextConfig(method="dino", views={"local_crops": 0}, dino=dino)
    return vit, get_pretext(cfg)(b0, vit, cfg)


def test_the_task_freezes_its_prototypes_and_moves_its_teacher_by_the_schedule(b0, batch):
    vit, task = build(b0, momentum=0.0, momentum_end=1.0, freeze_last_layer_epochs=1)
    task.begin_stage(steps_per_epoch=1, total_steps=2)
    params = [p for p in vit.parameters() if p.requires_grad] + task.head_parameters()
    opt = torch.optim.AdamW(params, lr=1e-2)
    head = task.student.head
    teacher = task.teacher.shadow()

    def step():
        opt.zero_grad(set_to_none=True)
        task.loss(batch, torch.Generator().manual_seed(0)).backward()
        opt.step()
        task.after_step()

    prototypes, mlp = head.prototypes.detach().clone(), head.mlp[0].weight.detach().clone()
    step()  # step 0: prototypes frozen, momentum 0 (the teacher takes the student's values)
    assert torch.equal(head.prototypes, prototypes) and not torch.equal(head.mlp[0].weight, mlp)
    assert torch.equal(teacher["head.mlp.0.weight"], head.mlp[0].weight)
    after_first = teacher["head.mlp.0.weight"].clone()
    step()  # step 1: the prototypes train, momentum 1 (the teacher stays)
    assert not torch.equal(head.prototypes, prototypes)
    assert torch.equal(teacher["head.mlp.0.weight"], after_first)
    assert int(task.stage_step) == 2
    assert "stage_step" in PretextBuffers(task, vit).buffers  # checkpointed with the teacher: a resume goes on


def test_the_held_out_loss_is_measured_at_the_final_temperature(b0, batch):
    _, fixed = build(b0, teacher_temp=0.07)
    _, warming = build(b0, teacher_temp=0.07, warmup_teacher_temp=0.01, teacher_temp_warmup_epochs=1)
    fixed.eval(), warming.eval()
    with torch.no_grad():
        a, b = (t.loss(batch, torch.Generator().manual_seed(3)) for t in (fixed, warming))
    assert float(a) == float(b) and math.isfinite(float(a))
    warming.train()  # while training, before the stage proper (the head warm-up): the starting temperature
    warming.loss(batch, torch.Generator().manual_seed(3))
    assert warming.criterion.teacher_temp == 0.01
