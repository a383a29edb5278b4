# WRONG (Task 1): rank-correlates the signed maps instead of their absolute values.
def cascading_randomization(model: nn.Module, input: torch.Tensor, target: int, attribute,
                            layers: list[str]) -> list[float]:
    """Cascading model randomisation test (Adebayo et al., 2018).

    Args:
        model: classifier, 1 x 3 x H x W -> 1 x classes (left unchanged).
        input: 1 x 3 x H x W image.
        target: class index explained.
        attribute: method, attribute(model, input, target) -> map (e.g. 1 x H x W).
        layers: dotted paths of modules of ``model``, in forward order.
    Returns:
        len(layers) floats: after re-initialising the last 1, 2, ..., len(layers) of ``layers``,
        Spearman's rank correlation of |map| with |original map| (nan if a map is constant).
    """
    def absolute(m: nn.Module) -> torch.Tensor:
        return attribute(m, input, target).detach().flatten()

    original = absolute(model)
    randomised = copy.deepcopy(model)
    correlations = []
    for path in reversed(layers):
        for module in get_module(randomised, path).modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        current = absolute(randomised)
        if bool((original == original[0]).all()) or bool((current == current[0]).all()):
            correlations.append(float("nan"))
        else:
            correlations.append(float(spearmanr(original.numpy(), current.numpy()).statistic))
    return correlations