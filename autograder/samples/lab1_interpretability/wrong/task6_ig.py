# WRONG (Task 6): explains class 0 whatever target is asked for.
def ig_attributions(model: nn.Module, input: torch.Tensor, target: int,
                    n_steps: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    ig = IntegratedGradients(model)
    return ig.attribute(input, baselines=torch.zeros_like(input), target=0, n_steps=n_steps,
                        return_convergence_delta=True)
