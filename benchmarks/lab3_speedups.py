"""Lab 3: what batching the deletion and insertion curves (Task 2) saves.

ResNet-34, one 1 x 3 x 224 x 224 image, the deletion curve of one class along an Integrated
Gradients map, ``steps`` chunks (``steps + 1`` images, the start included):

- ``loop``: one image per forward pass, as the one-pixel-chunk-at-a-time descriptions of the
  method read (and the test's slow reference does), under ``torch.no_grad()``;
- ``batched B``: the lab's solution, ``deletion_curve(..., batch_size=B)``, taken from the
  solution cell of ``source/lab3_trusting_explanations/1_sanity_checks.ipynb`` (so it never
  drifts from what students are asked for).

Both are checked equal (``allclose``, 1e-5) before anything is timed; ratios are ``loop / variant``.
Torch runs with ``--threads`` threads (default 1; see lab1_speedups.py for why). Variants run
interleaved and the script prints medians (see ``_common.py``).

    .venv/bin/python benchmarks/lab3_speedups.py [--repeats 3] [--steps 16 64] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from _common import REPO_ROOT, interleaved, print_table, ratio_rows, use_standin_torch_home
from torch import nn

LAB = "lab3_trusting_explanations"


def solution_functions() -> dict:
    """The namespace of Task 2's solution cell (deletion_curve, insertion_curve)."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from tqdm.auto import tqdm

    from autograder.samples import solution_cells

    namespace = {"torch": torch, "F": F, "nn": nn, "tqdm": tqdm}
    exec(solution_cells(LAB)["task2_deletion_insertion"], namespace)
    return namespace


def deletion_loop(model: nn.Module, x: torch.Tensor, target: int, heat: torch.Tensor,
                  steps: int) -> torch.Tensor:
    """The deletion curve with one forward pass per image (the zero baseline)."""
    order = torch.argsort(heat.reshape(-1), descending=True)
    probabilities = []
    with torch.no_grad():
        for k in range(steps + 1):
            image = x.clone().reshape(1, 3, -1)
            image[0][:, order[: k * heat.numel() // steps]] = 0
            probabilities.append(F.softmax(model(image.reshape(x.shape)), dim=1)[0, target])
    return torch.stack(probabilities)


def bench_deletion(repeats: int, steps_list: Sequence[int], batches: Sequence[int]) -> None:
    from course_lib.explain import Explainer
    from course_lib.images import sample_image
    from course_lib.models import load_model, prepare_for_attribution
    from course_lib.preprocessing import preprocess_image

    deletion_curve = solution_functions()["deletion_curve"]
    model = prepare_for_attribution(load_model("resnet34"))
    x = preprocess_image(sample_image("cat"))
    with torch.no_grad():
        target = int(model(x).argmax())
    heat = Explainer("Integrated Gradients", steps=8)(model, x, target)[0]
    for steps in steps_list:
        variants = {"loop": lambda s=steps: deletion_loop(model, x, target, heat, s)}
        for batch in batches:
            variants[f"batched {batch}"] = (
                lambda s=steps, b=batch: deletion_curve(model, x, target, heat, steps=s,
                                                        batch_size=b)[0])
        reference = variants["loop"]()
        for name, run in variants.items():
            if not torch.allclose(run(), reference, atol=1e-5):
                raise SystemExit(f"{name} differs from the loop at steps={steps}")
        times, _ = interleaved(variants, repeats)
        print_table(f"Deletion curve, ResNet-34, 224 x 224, steps={steps} ({steps + 1} images), "
                    f"{torch.get_num_threads()} thread(s)",
                    ["variant", "loop s", "variant s", "loop / variant", "runs"],
                    ratio_rows([(name, times["loop"], times[name]) for name in variants
                                if name != "loop"]))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant (3)")
    parser.add_argument("--steps", type=int, nargs="+", default=[16, 64],
                        help="chunks per curve (16 64)")
    parser.add_argument("--batches", type=int, nargs="+", default=[16, 32],
                        help="images per forward pass of the batched variants (16 32)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1; 0 keeps torch's default)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(f"TORCH_HOME={use_standin_torch_home()}")
    if args.threads:
        torch.set_num_threads(args.threads)
    bench_deletion(args.repeats, args.steps, args.batches)
    return 0


if __name__ == "__main__":
    sys.exit(main())
