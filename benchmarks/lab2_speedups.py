"""Lab 2: what batched occlusion saves, and what Score-CAM costs on the layers the lab explains.

a. Occlusion (Task 5), ResNet-34, one 1 x 3 x 224 x 224 image, patch 40, stride 20 (11 x 11 = 121
   patches), drop of the softmax probability of one class:
   - ``loop``: the original notebooks' loop, one occluded copy per forward pass, autograd on;
   - ``loop, no_grad``: the same loop without building the autograd graph;
   - ``batched B``: the lab's solution (``occlusion_sensitivity`` logic), B copies per forward
     pass under ``torch.no_grad()``;
   - ``batched 32, channels_last``: the same with the model and the batch in channels-last
     memory format (oneDNN's preferred layout on x86 CPUs), which the lab does not ask for.
   All variants are checked equal (``allclose``, 1e-5) before anything is timed; the ratios are
   ``loop / variant``.
b. Score-CAM (Task 4) on ResNet-34 ``layer4[-1]`` (512 channels, 7 x 7) and VGG16's last conv
   (512 channels, 14 x 14): the full method (one forward pass per channel) against the lab's
   ``keep_top_channels(16)`` (16 passes: the channels of largest spatial variance, as Faster
   Score-CAM does, https://github.com/tabayashi0117/Score-CAM#faster-score-cam). The full VGG16
   run takes minutes on a laptop CPU, so by default its time is *estimated* from 64 channels
   (``--full-vgg`` runs it). The library's own progress bars are off (``TQDM_DISABLE``), as in
   the lab's ``cam_family(..., progress=False)``.

Torch runs with ``--threads`` threads (default 1: on a shared 2-core machine two threads slow
batch-of-one work down unpredictably, see lab1_speedups.py; ``--threads 0`` keeps torch's
default, what a student's notebook uses). Variants run interleaved and the
script prints medians (see ``_common.py``).

    .venv/bin/python benchmarks/lab2_speedups.py [--repeats 3] [--only occlusion|scorecam]
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
from collections.abc import Callable, Sequence

os.environ.setdefault("TQDM_DISABLE", "1")  # ScoreCAM's progress bars; read when tqdm is imported

import torch
import torch.nn.functional as F
from _common import interleaved, median, print_table, ratio_rows, timed, use_standin_torch_home
from torch import nn

PATCH, STRIDE = 40, 20


def corners(size: int, patch: int = PATCH, stride: int = STRIDE) -> list[tuple[int, int]]:
    """Top-left patch corners, as in Task 5 and Captum (the last ones cut by the border)."""
    starts = range(0, max(size - patch, 0) + stride, stride)
    return [(i, j) for i in starts for j in starts]


def accumulate(drops: Sequence[float], size: int) -> torch.Tensor:
    """Mean drop over the patches covering each pixel (H x W)."""
    total, count = torch.zeros(size, size), torch.zeros(size, size)
    for drop, (i, j) in zip(drops, corners(size), strict=True):
        total[i:i + PATCH, j:j + PATCH] += drop
        count[i:i + PATCH, j:j + PATCH] += 1
    return total / count.clamp(min=1)


def occlusion_loop(model: nn.Module, x: torch.Tensor, target: int, grad: bool) -> torch.Tensor:
    """One occluded copy per forward pass (the original notebooks' loop)."""
    with torch.set_grad_enabled(grad):
        base = F.softmax(model(x), dim=1)[0, target].item()
        drops = []
        for i, j in corners(x.shape[-1]):
            y = x.clone()
            y[..., i:i + PATCH, j:j + PATCH] = 0
            drops.append(base - F.softmax(model(y), dim=1)[0, target].item())
    return accumulate(drops, x.shape[-1])


def occlusion_batched(model: nn.Module, x: torch.Tensor, target: int, batch: int,
                      channels_last: bool = False) -> torch.Tensor:
    """``batch`` occluded copies per forward pass, no autograd (the lab's solution)."""
    places = corners(x.shape[-1])
    drops: list[float] = []
    with torch.no_grad():
        base = F.softmax(model(x), dim=1)[0, target]
        for start in range(0, len(places), batch):
            chunk = places[start:start + batch]
            y = x.repeat(len(chunk), 1, 1, 1)
            for n, (i, j) in enumerate(chunk):
                y[n, :, i:i + PATCH, j:j + PATCH] = 0
            if channels_last:
                y = y.contiguous(memory_format=torch.channels_last)
            drops += (base - F.softmax(model(y), dim=1)[:, target]).tolist()
    return accumulate(drops, x.shape[-1])


def bench_occlusion(repeats: int) -> None:
    from course_lib.models import load_model

    model = load_model("resnet34")
    fast_model = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    target = 1
    variants: dict[str, Callable[[], torch.Tensor]] = {
        "loop": lambda: occlusion_loop(model, x, target, grad=True),
        "loop, no_grad": lambda: occlusion_loop(model, x, target, grad=False),
        "batched 8": lambda: occlusion_batched(model, x, target, 8),
        "batched 32": lambda: occlusion_batched(model, x, target, 32),
        "batched 32, channels_last": lambda: occlusion_batched(fast_model, x, target, 32, True),
    }
    reference = variants["loop"]()
    for name, fn in variants.items():
        if not torch.allclose(fn(), reference, atol=1e-5):
            sys.exit(f"occlusion variant {name!r} differs from the loop: not comparable")
    print(f"\n{len(corners(224))} patches of {PATCH} px at stride {STRIDE}; all variants equal.")
    times, _ = interleaved(variants, repeats)
    print_table(
        "a. Occlusion on ResNet-34 (ratio = loop / variant)",
        ("variant", "loop s", "variant s", "speed-up", "n"),
        ratio_rows([(name, times["loop"], times[name]) for name in variants if name != "loop"]),
    )


def scorecam_seconds(model: nn.Module, layer: nn.Module, x: torch.Tensor, target: int,
                     channels: int | None) -> float:
    """Wall time of one pytorch-grad-cam ScoreCAM call, all channels or the top ``channels``."""
    from pytorch_grad_cam import ScoreCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    def keep_top(activation: torch.Tensor) -> torch.Tensor:
        spread = activation.flatten(2).var(dim=-1).mean(dim=0)
        return activation[:, spread.topk(min(channels or 0, spread.numel())).indices]

    transform = keep_top if channels else None
    with ScoreCAM(model, target_layers=[layer], reshape_transform=transform) as cam:
        cam.batch_size = 16
        seconds, _ = timed(lambda: cam(input_tensor=x, targets=[ClassifierOutputTarget(target)]))
    return seconds


def bench_scorecam(repeats: int, full_vgg: bool, top: int) -> None:
    from course_lib.models import get_target_layer, load_model, prepare_for_attribution

    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    rows: list[list[object]] = []
    for name in ("resnet34", "vgg16"):
        model = prepare_for_attribution(load_model(name))
        layer = get_target_layer(model, name)
        with torch.no_grad():
            model(x)  # warm-up
        fast = [scorecam_seconds(model, layer, x, 1, top) for _ in range(repeats)]
        if name == "vgg16" and not full_vgg:
            sample = median([scorecam_seconds(model, layer, x, 1, 64) for _ in range(repeats)])
            full = sample * 512 / 64
            label = f"{name}: all 512 (estimated from 64)"
        else:
            full = median([scorecam_seconds(model, layer, x, 1, None) for _ in range(1)])
            label = f"{name}: all 512"
        rows.append([label, full, median(fast), f"{full / median(fast):.1f}x", len(fast)])
    print_table(
        f"b. Score-CAM: every channel against the top {top} (one forward pass per channel)",
        ("layer", "full s", f"top-{top} s", "saving", "n"), rows,
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant (3)")
    parser.add_argument("--only", action="append", choices=("occlusion", "scorecam"))
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1; 0: torch's default)")
    parser.add_argument("--top", type=int, default=16,
                        help="Score-CAM channels kept (16, the lab's SCORE_CAM_CHANNELS)")
    parser.add_argument("--full-vgg", action="store_true", help="run VGG16's full Score-CAM")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    print(f"TORCH_HOME={use_standin_torch_home()}, torch threads: {torch.get_num_threads()}")
    parts = args.only or ["occlusion", "scorecam"]
    if "occlusion" in parts:
        bench_occlusion(args.repeats)
    if "scorecam" in parts:
        bench_scorecam(max(1, math.ceil(args.repeats / 2)), args.full_vgg, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
