# WRONG (Task 8): reads stdevs as a fraction of the input's range (the paper's convention) instead of a standard deviation in input units.
def noise_tunnel_attributions(model: nn.Module, input: torch.Tensor, target: int,
                              nt_samples: int = 10, nt_type: str = "smoothgrad_sq",
                              stdevs: float = 0.15, n_steps: int = 20) -> torch.Tensor:
    tunnel = NoiseTunnel(IntegratedGradients(model))
    return tunnel.attribute(input, baselines=torch.zeros_like(input), target=target,
                            nt_samples=nt_samples, nt_type=nt_type,
                            stdevs=stdevs * float(input.max() - input.min()),
                            nt_samples_batch_size=1, n_steps=n_steps, internal_batch_size=n_steps)
