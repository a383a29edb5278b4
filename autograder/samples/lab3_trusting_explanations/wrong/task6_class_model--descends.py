# WRONG (Task 6): gradient DESCENT: steps against the objective's gradient, lowering the class's score.
def class_model(model: nn.Module, target: int, steps: int = 100, l2: float = 1e-3, jitter: int = 8,
                blur_every: int = 10, lr: float = 0.1, size: int = 224, blur_sigma: float = 0.5,
                progress: bool = False) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    low, high = (0 - mean) / std, (1 - mean) / std
    kernel = 2 * math.ceil(3 * blur_sigma) + 1
    x = 0.01 * torch.randn(1, 3, size, size)
    for step in tqdm(range(steps), disable=not progress):
        dy, dx = torch.randint(-jitter, jitter + 1, (2,)).tolist() if jitter > 0 else (0, 0)
        rolled = torch.roll(x, shifts=(dy, dx), dims=(2, 3)).requires_grad_(True)
        objective = model(rolled)[0, target] - l2 * rolled.pow(2).sum()
        (gradient,) = torch.autograd.grad(objective, rolled)
        with torch.no_grad():
            rolled = rolled - lr * gradient / gradient.pow(2).mean().sqrt()
            x = torch.roll(rolled, shifts=(-dy, -dx), dims=(2, 3))
            x = torch.maximum(torch.minimum(x, high), low)
            if blur_every > 0 and (step + 1) % blur_every == 0:
                x = gaussian_blur(x, [kernel, kernel], [blur_sigma, blur_sigma])
    return x.detach()
