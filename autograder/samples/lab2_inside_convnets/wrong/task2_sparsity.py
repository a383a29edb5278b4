# WRONG (Task 2): the fraction of non-zero values (density) instead of zeros.
def activation_sparsity(activations: dict[str, torch.Tensor]) -> dict[str, float]:
    return {name: float((act != 0).float().mean()) for name, act in activations.items()}
