# WRONG (Task 8): a random tensor of the right shape instead of the noise tunnel.
def noise_tunnel_attributions(model: nn.Module, input: torch.Tensor, target: int,
                              nt_samples: int = 10, nt_type: str = "smoothgrad_sq",
                              stdevs: float = 0.15, n_steps: int = 20) -> torch.Tensor:
    return torch.rand_like(input)
