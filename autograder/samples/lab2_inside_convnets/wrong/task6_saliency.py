# WRONG (Task 6): sums the signed gradient over the channels (no absolute value, no max); SmoothGrad inherits it.
def saliency_map(model: nn.Module, input: torch.Tensor, target: int) -> torch.Tensor:
    x = input.detach().clone().requires_grad_(True)
    model(x)[0, target].backward()
    return x.grad.sum(dim=1)[0]


def smoothgrad(model: nn.Module, input: torch.Tensor, target: int, n_samples: int = 25,
               sigma: float = 0.15, progress: bool = False) -> torch.Tensor:
    total = torch.zeros(input.shape[-2:])
    for _ in range(n_samples):
        total += saliency_map(model, input + sigma * torch.randn_like(input), target)
    return total / n_samples
