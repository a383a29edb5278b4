# WRONG (Task 2): orders the pixels by increasing attribution: the least important are replaced first.
def deletion_curve(model: nn.Module, input: torch.Tensor, target: int, attribution: torch.Tensor,
                   steps: int = 16, baseline: torch.Tensor | None = None, batch_size: int = 16,
                   progress: bool = False) -> tuple[torch.Tensor, float]:
    """Deletion curve: p(target) as the most important pixels are replaced by the baseline.

    Args:
        model: classifier, batch x 3 x H x W -> batch x classes (logits).
        input: 1 x 3 x H x W image.
        target: class index.
        attribution: H x W map (larger = more important).
        steps: chunks of H * W // steps pixels (about).
        baseline: 1 x 3 x H x W values the deleted pixels take (None: zeros).
        batch_size: images per forward pass.
        progress: draw a progress bar over the batches.
    Returns:
        (steps + 1 probabilities, trapezoid AUC over [0, 1]).
    """
    baseline = torch.zeros_like(input) if baseline is None else baseline
    return _replace_in_order(model, input, baseline, target, attribution, steps, batch_size,
                             progress, "deletion")


def insertion_curve(model: nn.Module, input: torch.Tensor, target: int, attribution: torch.Tensor,
                    steps: int = 16, baseline: torch.Tensor | None = None, batch_size: int = 16,
                    progress: bool = False) -> tuple[torch.Tensor, float]:
    """Insertion curve: p(target) as the most important pixels are revealed on the baseline.

    Args and Returns: as deletion_curve (the curve starts from the baseline).
    """
    baseline = torch.zeros_like(input) if baseline is None else baseline
    return _replace_in_order(model, baseline, input, target, attribution, steps, batch_size,
                             progress, "insertion")


def _replace_in_order(model, start, source, target, attribution, steps, batch_size, progress, desc):
    """p(target) on copies of ``start`` whose top-ranked positions hold ``source``'s values."""
    _, channels, height, width = start.shape
    order = torch.argsort(attribution.reshape(-1))
    images = start.repeat(steps + 1, 1, 1, 1).reshape(steps + 1, channels, height * width)
    flat = source.reshape(channels, height * width)
    for k in range(1, steps + 1):
        chosen = order[: k * height * width // steps]
        images[k][:, chosen] = flat[:, chosen]
    images = images.reshape(steps + 1, channels, height, width)
    probabilities = []
    with torch.no_grad():
        for first in tqdm(range(0, steps + 1, batch_size), desc=desc, unit="batch", disable=not progress):
            probabilities.append(F.softmax(model(images[first:first + batch_size]), dim=1)[:, target])
    curve = torch.cat(probabilities)
    return curve, float(torch.trapezoid(curve, dx=1 / steps))