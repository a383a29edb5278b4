# WRONG (Task 5): the wrong direction: steps UP the target's loss (gradient ascent), away from the target class.
def fooling_image(model: nn.Module, input: torch.Tensor, target_class: int, epsilon: float, steps: int,
                  step_size: float | None = None, progress: bool = False) -> torch.Tensor:
    alpha = 2.5 * epsilon / steps if step_size is None else step_size
    start = denormalize(input.detach())
    pixels = start.clone()
    goal = torch.tensor([target_class])
    for _ in tqdm(range(steps), disable=not progress):
        pixels.requires_grad_(True)
        loss = F.cross_entropy(model(normalize(pixels)), goal)
        (gradient,) = torch.autograd.grad(loss, pixels)
        with torch.no_grad():
            pixels = pixels + alpha * gradient.sign()
            pixels = start + (pixels - start).clamp(-epsilon, epsilon)
            pixels = pixels.clamp(0.0, 1.0)
    return normalize(pixels).detach()
