"""course_lib.testing: the tiny models' promises, and quiet_progress."""

from __future__ import annotations

import io

import torch
import tqdm
import tqdm.auto
import tqdm.notebook

from course_lib.hooks import capture_activations
from course_lib.testing import (
    CountingModel,
    HookSpy,
    fixed_vit,
    quiet_progress,
    tiny_cnn,
    tiny_input,
)


def test_tiny_cnn_is_seeded_and_in_eval_mode():
    a, b = tiny_cnn(seed=3), tiny_cnn(seed=3)
    assert not a.training
    x = tiny_input(seed=1)
    assert torch.equal(a(x), b(x))
    assert not torch.equal(a(x), tiny_cnn(seed=4)(x))


def test_counting_model_counts_rows():
    model = CountingModel(tiny_cnn())
    model(tiny_input(batch=3))
    assert (model.rows, model.calls) == (3, 1)


def test_quiet_progress_disables_every_kind_of_bar_and_only_inside():
    out = io.StringIO()
    with quiet_progress():
        for _ in tqdm.tqdm(range(3), file=out):
            pass
        assert tqdm.auto.tqdm(range(2), file=out).disable
        assert tqdm.notebook.tqdm(range(2)).disable
        assert tqdm.tqdm(range(2), disable=False, file=out).disable
        # by position: iterable, desc, total, leave, file, ncols, mininterval, maxinterval,
        # miniters, ascii, disable
        assert tqdm.tqdm(range(2), "d", 2, True, out, None, 0.1, 10.0, None, None, False).disable
    assert out.getvalue() == ""
    bar = tqdm.tqdm(range(3), file=out)
    assert not bar.disable
    list(bar)  # (a bar disables itself when it closes)
    assert "3/3" in out.getvalue()


def test_quiet_progress_restores_tqdm_after_an_error():
    before = vars(tqdm.std.tqdm)["__init__"]
    try:
        with quiet_progress():
            raise KeyError("boom")
    except KeyError:
        pass
    assert vars(tqdm.std.tqdm)["__init__"] is before


def test_hook_spy_names_the_code_that_registered_the_hooks():
    model = tiny_cnn(seed=1)
    model.features[2] = spy = HookSpy(model.features[2])
    x = tiny_input(seed=1)
    reference = model(x)
    handle = spy.register_forward_hook(lambda module, args, output: None)
    with capture_activations({"relu1": spy}):
        assert torch.equal(model(x), reference)  # the spy changes nothing
    handle.remove()
    assert spy.hook_origins == [__name__, "course_lib.hooks"]  # one call, two hooks


def test_fixed_vit_is_the_same_everywhere_and_leaves_the_rng_alone():
    state = torch.get_rng_state()
    a, b = fixed_vit(), fixed_vit()
    assert torch.equal(torch.get_rng_state(), state)
    x = torch.sin(torch.arange(768.0) * 0.37).reshape(1, 3, 16, 16)
    assert not a.training and torch.equal(a(x), b(x)) and a(x).shape == (1, 3)
    assert [len(a.encoder.layers), a.encoder.layers[0].self_attention.num_heads] == [2, 2]
    weights = []
    uniform = fixed_vit(uniform_attention=True)
    uniform.encoder.layers[0].self_attention.register_forward_hook(
        lambda module, args, output: weights.append(output[1]))
    uniform.encoder.layers[0].self_attention.register_forward_pre_hook(
        lambda module, args, kwargs: (args, {**kwargs, "need_weights": True}), with_kwargs=True)
    uniform(x)
    assert torch.allclose(weights[0], torch.full((1, 5, 5), 0.2))
