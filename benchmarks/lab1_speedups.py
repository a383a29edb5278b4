"""Lab 1: how much the solutions' efficient choices save on ResNet-34 (CPU), measured side by side.

Three choices of the lab 1 solutions are compared with the plain way of doing the same thing. For
each, both variants compute the same result (checked with ``allclose`` before any speed-up is
printed, so a faster but different computation cannot pass for a speed-up), run interleaved in this
one process, and the script prints the median time of each and their ratio (see ``_common``).

a. Filter visualisation (Task 5, ``2_filters``): gradient ascent on a 96 x 96 image with Adam
   (lr 0.1) for three filters of layer1, layer2 and layer4, the 3 x 3 grid of the notebook.
   *Efficient*: ``course_lib.hooks.forward_until(model, layer, x)`` stops the forward pass as soon
   as ``layer`` has produced its output. *Plain* (the original lab's loop): a forward hook stores
   the layer's output while the whole network still runs. The backward pass is the same in both
   (``torch.autograd.grad(loss, image)`` only walks the graph between the image and the layer),
   so the saving is the forward pass of everything after the layer: large for layer1, close to
   nothing for layer4 (only the pooling and the classifier follow it).
b. Occlusion (Task 9, ``3_attributions``): Captum ``Occlusion`` with a 32-pixel window at stride
   16 on a 1 x 3 x 224 x 224 image (169 positions, one forward pass each), evaluated
   ``perturbations_per_eval=32`` positions per forward pass versus one at a time. Also prints an
   *estimate* of the 15 x 15 window at stride 8 (729 positions), from timing a fraction of its
   positions, to document the trap listed in docs/design.md ("Environment and known traps").
c. Integrated Gradients (Task 6 and 9) with ``n_steps=50``: ``internal_batch_size=25`` (two
   batches of 25 path points) versus none (all 50 in one batch). Prints the time ratio and
   the extra peak resident memory of each call (see ``reset_peak_memory``; Linux only), which is
   printed for Occlusion too.

Threads: by default the script sets ``torch.set_num_threads(1)``. On a shared 2-core machine
with other work running, torch's two OpenMP threads wait on each other at every operator: a
ResNet-34 forward pass of one 224 x 224 image was measured 15-25x slower than with one thread,
one of a batch of 32 about 1.6x slower. The ratios then measure the contention, not the code.
One thread gives stable ratios of the work done; ``--threads 0`` (torch's default, all cores)
shows what a student's otherwise idle laptop sees.

Run from the repository root (about 2-3 minutes by default, under a minute with ``--quick``):

    TORCH_HOME=.cache/torch-standin .venv/bin/python benchmarks/lab1_speedups.py [--quick]

Without TORCH_HOME the script uses the repository's stand-in weights folder when it exists.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from _common import (
    interleaved,
    median,
    print_table,
    ratio_rows,
    timed,
    use_standin_torch_home,
)
from torch import Tensor, nn

IMAGE_SIZE = 96  # the notebook's filter grid uses image_size=96
FILTERS = (0, 1, 2)
LAYERS = ("layer1", "layer2", "layer4")
IG_STEPS = 50
IG_BATCH = 25
HEADERS = ("variant: plain vs efficient", "plain s", "efficient s", "speed-up", "n")


# --------------------------------------------------------------------------- set-up


def load_resnet34(*, for_attribution: bool = False) -> nn.Module:
    """ResNet-34 through ``course_lib`` (stand-in or real weights), in eval mode.

    Args:
        for_attribution: return the ``prepare_for_attribution`` copy that ``3_attributions``
            uses (separate, not-in-place ReLUs: the same function, slightly different memory).
    """
    from course_lib.models import load_model, prepare_for_attribution

    model = load_model("resnet34", progress=False)
    return prepare_for_attribution(model) if for_attribution else model


def cat_input(model: nn.Module) -> tuple[Tensor, int]:
    """The notebooks' sample photograph as a 1 x 3 x 224 x 224 batch, and its top class."""
    from course_lib.images import sample_image
    from course_lib.preprocessing import preprocess_image

    x = preprocess_image(sample_image("cat"))
    with torch.no_grad():
        target = int(model(x).argmax(dim=1))
    return x, target


def check_close(name: str, a: Tensor, b: Tensor, rel: float) -> float:
    """Assert that ``a`` and ``b`` agree within ``rel`` times ``max|a|``; return that error.

    Raises:
        AssertionError: if they do not; the benchmark would compare different computations.
    """
    scale = float(a.abs().max()) or 1.0
    error = float((a - b).abs().max()) / scale
    if not torch.allclose(a, b, rtol=rel, atol=rel * scale):
        raise AssertionError(f"{name}: the variants disagree (max diff {error:.2e} of max|a|)")
    return error


# --------------------------------------------------------------------------- memory


def _proc_status_mib(key: str) -> float:
    """A ``VmRSS``/``VmHWM`` line of /proc/self/status, in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024  # the file says kB
    raise KeyError(key)


def release_free_memory() -> None:
    """Return the C heap's free memory to the OS (glibc ``malloc_trim``), where available.

    Without it, memory freed by one variant stays in the process's RSS and the next variant
    reuses it without raising the peak: the second variant would look cheaper than it is.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reset_peak_memory() -> bool:
    """Reset this process's peak RSS (VmHWM) to its current RSS; False where unsupported.

    Linux only (``/proc/self/clear_refs``, value 5). ``tracemalloc`` cannot see torch's
    allocations, and ``resource.getrusage``'s ``ru_maxrss`` cannot be reset (it even keeps the
    parent's peak across ``fork`` and ``exec``), so this is the cheap way to measure one call.
    """
    try:
        Path("/proc/self/clear_refs").write_text("5")
        _proc_status_mib("VmHWM")
    except (OSError, KeyError):
        return False
    return True


def with_peak_memory(fn: Callable[[], Any], peaks: list[float]) -> Callable[[], Any]:
    """Wrap ``fn`` so that each call appends its extra peak RSS (MiB) to ``peaks``.

    The extra peak is the highest RSS during the call minus the RSS just before it: memory the
    call needed on top of what the process already held (the model, the input). Meaningful
    when ``release_free_memory`` ran just before (``interleaved(..., setup=...)``).
    """

    def run() -> Any:
        if not reset_peak_memory():
            return fn()
        before = _proc_status_mib("VmRSS")
        result = fn()
        peaks.append(_proc_status_mib("VmHWM") - before)
        return result

    return run


def print_peaks(peaks: dict[str, list[float]], plain: str, efficient: str) -> None:
    """Print the median extra peak RSS of two variants and their ratio (if measured)."""
    if not peaks[plain] or not peaks[efficient]:
        print("   peak memory: not measured (needs Linux /proc/self/clear_refs)")
        return
    a, b = median(peaks[plain]), median(peaks[efficient])
    print(
        f"   extra peak RSS during one call (median): {plain}: {a:.0f} MiB, {efficient}: "
        f"{b:.0f} MiB; {plain}/{efficient} = {a / max(b, 1.0):.2f}x"
    )


# --------------------------------------------------------------------------- a. filters


def ascend_filter(
    model: nn.Module, layer: nn.Module, filter_index: int, iterations: int, *, stop_early: bool
) -> Tensor:
    """Task 5's gradient ascent; returns the 1 x 3 x S x S image (S = IMAGE_SIZE) in [0, 1].

    Args:
        model: ResNet-34 in eval mode.
        layer: the stage whose channel ``filter_index`` is maximised.
        filter_index: channel of ``layer``'s output.
        iterations: Adam steps (lr 0.1).
        stop_early: True runs ``forward_until`` (the solution); False runs the whole model
            with a forward hook that stores ``layer``'s output (the original lab's loop).
    """
    from course_lib.hooks import forward_until
    from course_lib.preprocessing import normalize

    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)
    image = (0.5 + 0.05 * noise).clamp(0, 1).requires_grad_(True)
    optimizer = torch.optim.Adam([image], lr=0.1)
    stored: list[Tensor] = []
    handle = None
    if not stop_early:
        handle = layer.register_forward_hook(lambda module, args, output: stored.append(output))
    try:
        for _ in range(iterations):
            if stop_early:
                activation = forward_until(model, layer, normalize(image))
            else:
                model(normalize(image))  # the full network runs; the hook keeps layer's output
                activation = stored.pop()
            loss = -activation[0, filter_index].mean()
            image.grad = torch.autograd.grad(loss, image)[0]
            optimizer.step()
            with torch.no_grad():
                image.clamp_(0, 1)
    finally:
        if handle is not None:
            handle.remove()
    return image.detach()


def bench_filters(model: nn.Module, iterations: int, repeats: int) -> None:
    """Time the notebook's 3 x 3 filter grid both ways, per layer and in total."""
    layers = {name: getattr(model, name) for name in LAYERS}
    for layer in layers.values():  # warm-up: first calls allocate and pick kernels
        ascend_filter(model, layer, 0, 1, stop_early=True)
        ascend_filter(model, layer, 0, 1, stop_early=False)
    # seconds[variant][layer][rep], summed over the layer's filters
    seconds = {v: {n: [0.0] * repeats for n in layers} for v in ("plain", "efficient")}
    worst = 0.0
    step = 0
    for rep in range(repeats):
        for name, layer in layers.items():
            for index in FILTERS:
                order = ("plain", "efficient") if step % 2 == 0 else ("efficient", "plain")
                step += 1
                images: dict[str, Tensor] = {}
                for variant in order:
                    t, images[variant] = timed(
                        lambda layer=layer, index=index, variant=variant: ascend_filter(
                            model, layer, index, iterations, stop_early=variant == "efficient"
                        )
                    )
                    seconds[variant][name][rep] += t
                label = f"filter image {name}[{index}]"
                worst = max(worst, check_close(label, images["plain"], images["efficient"], 1e-5))
    pairs = [
        (f"{name} x{len(FILTERS)} filters", seconds["plain"][name], seconds["efficient"][name])
        for name in layers
    ]
    totals = {v: [sum(s[n][r] for n in layers) for r in range(repeats)] for v, s in seconds.items()}
    pairs.append(("3x3 grid total", totals["plain"], totals["efficient"]))
    print_table(
        f"a. Filter visualisation (Task 5): forward hook on the full model vs forward_until; "
        f"{iterations} Adam steps, {IMAGE_SIZE}x{IMAGE_SIZE} image; images equal "
        f"(max diff {worst:.1e})",
        HEADERS,
        ratio_rows(pairs),
    )


# --------------------------------------------------------------------------- b. occlusion


def occlusion(
    model: nn.Module, x: Tensor, target: int, window: int, stride: int, ppe: int
) -> Tensor:
    """Captum Occlusion as in Task 9: square windows set to 0 (the mean colour), all channels."""
    from captum.attr import Occlusion

    return Occlusion(model).attribute(
        x,
        target=target,
        sliding_window_shapes=(3, window, window),
        strides=(3, stride, stride),
        baselines=0.0,
        perturbations_per_eval=ppe,
    )


def positions(size: int, window: int, stride: int) -> int:
    """Number of window positions Captum visits on a size x size image."""
    return ((size - window) // stride + 1) ** 2


def estimate_occlusion_seconds(
    model: nn.Module, x: Tensor, window: int, stride: int, batch: int, sample: int
) -> tuple[float, int]:
    """Estimate a full Occlusion run from ``sample`` of its positions.

    The occluded copies of ``x`` for the first ``sample`` positions are built and run through
    the model in batches of ``batch`` (what ``perturbations_per_eval=batch`` does); the time
    per position is scaled to all positions. Captum's own overhead is not included.

    Returns:
        (estimated seconds for all positions, number of positions).
    """
    size = x.shape[-1]
    starts = range(0, size - window + 1, stride)
    corners = [(r, c) for r in starts for c in starts][:sample]
    copies = x.repeat(len(corners), 1, 1, 1)
    for i, (r, c) in enumerate(corners):
        copies[i, :, r : r + window, c : c + window] = 0.0
    with torch.no_grad():
        seconds, _ = timed(lambda: [model(chunk) for chunk in copies.split(batch)])
    total = positions(size, window, stride)
    return seconds / len(corners) * total, total


def bench_occlusion(model: nn.Module, x: Tensor, target: int, repeats: int, sample: int) -> None:
    """Time Occlusion 32/16 with 1 vs 32 perturbations per eval; estimate 15/8."""
    peaks: dict[str, list[float]] = {"ppe=1": [], "ppe=32": []}
    times, results = interleaved(
        {
            "ppe=1": with_peak_memory(
                lambda: occlusion(model, x, target, 32, 16, 1), peaks["ppe=1"]
            ),
            "ppe=32": with_peak_memory(
                lambda: occlusion(model, x, target, 32, 16, 32), peaks["ppe=32"]
            ),
        },
        repeats,
        setup=release_free_memory,
    )
    error = check_close("Occlusion", results["ppe=1"], results["ppe=32"], 1e-4)
    n_positions = positions(x.shape[-1], 32, 16)
    print_table(
        f"b. Occlusion (Task 9), window 32 stride 16 on 224x224 ({n_positions} positions): "
        f"perturbations_per_eval 1 vs 32; attributions equal (max diff {error:.1e} of max)",
        HEADERS,
        ratio_rows([("Occlusion 32/16: ppe=1 vs ppe=32", times["ppe=1"], times["ppe=32"])]),
    )
    print_peaks(peaks, "ppe=1", "ppe=32")
    estimate, total = estimate_occlusion_seconds(model, x, 15, 8, batch=32, sample=sample)
    per_position = {k: median(v) / n_positions for k, v in times.items()}
    print(
        f"\n   Estimate for the trap in docs/design.md, window 15 stride 8: {total} positions "
        f"({total / n_positions:.1f}x as many as 32/16).\n"
        f"   - from timing {sample} of its positions in batches of 32 (model only): "
        f"~{estimate:.0f} s\n"
        f"   - scaled from the measured 32/16 runs: ~{per_position['ppe=32'] * total:.0f} s "
        f"with ppe=32, ~{per_position['ppe=1'] * total:.0f} s with ppe=1"
    )


# --------------------------------------------------------------------------- c. IG


def integrated_gradients(model: nn.Module, x: Tensor, target: int, batch: int | None) -> Tensor:
    """Captum IG as in Task 6/9: zero baseline, n_steps=50, optional internal batch size."""
    from captum.attr import IntegratedGradients

    return IntegratedGradients(model).attribute(
        x,
        baselines=torch.zeros_like(x),
        target=target,
        n_steps=IG_STEPS,
        internal_batch_size=batch,
    )


def bench_ig(model: nn.Module, x: Tensor, target: int, repeats: int) -> None:
    """Time IG with and without internal_batch_size, and the extra peak memory of each."""
    peaks: dict[str, list[float]] = {"none": [], f"{IG_BATCH}": []}
    times, results = interleaved(
        {
            "none": with_peak_memory(
                lambda: integrated_gradients(model, x, target, None), peaks["none"]
            ),
            f"{IG_BATCH}": with_peak_memory(
                lambda: integrated_gradients(model, x, target, IG_BATCH), peaks[f"{IG_BATCH}"]
            ),
        },
        repeats,
        setup=release_free_memory,
    )
    error = check_close("Integrated Gradients", results["none"], results[f"{IG_BATCH}"], 1e-4)
    rows = ratio_rows(
        [(f"IG n_steps={IG_STEPS}: batch none vs {IG_BATCH}", times["none"], times[f"{IG_BATCH}"])]
    )
    print_table(
        f"c. Integrated Gradients, n_steps={IG_STEPS}: internal_batch_size none vs {IG_BATCH}; "
        f"attributions equal (max diff {error:.1e} of max)",
        HEADERS,
        rows,
    )
    print_peaks(peaks, "none", f"{IG_BATCH}")


# --------------------------------------------------------------------------- main


def load_average() -> str:
    """The 1, 5 and 15 minute load averages: above the core count, other work competed."""
    return " ".join(f"{value:.1f}" for value in os.getloadavg())


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (see --help)."""
    parser = argparse.ArgumentParser(
        description="Lab 1 speed-ups on ResNet-34, measured side by side (ratios, medians).",
    )
    parser.add_argument("--repeats", type=int, default=3, help="repetitions per variant (3)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="one repetition and a smaller occlusion estimate sample (about a minute)",
    )
    parser.add_argument(
        "--iterations", type=int, default=10, help="Adam steps per filter image (10)"
    )
    parser.add_argument(
        "--only",
        choices=("filters", "occlusion", "ig"),
        action="append",
        help="run only this part (repeatable); default all",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (1); 0 keeps torch's default (all cores): use 0 only on an "
        "otherwise idle machine, see the module docstring",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.quick:
        args.repeats = 1
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected benchmarks and print their tables."""
    args = parse_args(argv)
    torch_home = use_standin_torch_home()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    from course_lib.models import weights_notice

    start = time.perf_counter()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, TORCH_HOME={torch_home}")
    print(f"CPU cores: {os.cpu_count()}, load average at start: {load_average()}")
    print(weights_notice() or "Real ImageNet weights.")
    print(f"repeats per variant: {args.repeats} (interleaved; medians shown)")
    parts = set(args.only or ("filters", "occlusion", "ig"))
    steps: list[tuple[str, Callable[[], None]]] = []
    if "filters" in parts:
        model = load_resnet34()
        steps.append(("filters", lambda: bench_filters(model, args.iterations, args.repeats)))
    if parts & {"occlusion", "ig"}:
        attr_model = load_resnet34(for_attribution=True)
        x, target = cat_input(attr_model)
        if "occlusion" in parts:
            sample = 32 if args.quick else 64
            steps.append(
                ("occlusion", lambda: bench_occlusion(attr_model, x, target, args.repeats, sample))
            )
        if "ig" in parts:
            steps.append(("ig", lambda: bench_ig(attr_model, x, target, args.repeats)))
    for name, step in steps:
        seconds, _ = timed(step)
        print(f"   ({name}: {seconds:.0f} s)")
    print(
        f"\nTotal run time: {time.perf_counter() - start:.0f} s; load average at end: "
        f"{load_average()}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
