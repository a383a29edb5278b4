# WRONG (Task 1): stores each module's input (args[0]) instead of its output, and never removes the hooks.
def capture_activations(model: nn.Module, layers: dict[str, nn.Module],
                        input: torch.Tensor) -> dict[str, torch.Tensor]:
    stored = {}
    for name, layer in layers.items():
        layer.register_forward_hook(lambda module, args, output, name=name: stored.__setitem__(name, args[0].detach()))
    with torch.no_grad():
        model(input)
    return stored
