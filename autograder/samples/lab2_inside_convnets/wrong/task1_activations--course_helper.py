# WRONG (Task 1): hands the work to course_lib.hooks' own recorder (the tests' reference) instead of registering hooks.
def capture_activations(model: nn.Module, layers: dict[str, nn.Module],
                        input: torch.Tensor) -> dict[str, torch.Tensor]:
    from course_lib.hooks import capture_activations as course_capture
    with course_capture(layers) as acts, torch.no_grad():
        model(input)
    return {name: acts[name] for name in layers}
