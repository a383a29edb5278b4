# WRONG (Task 4): ignores score_cam_channels: Score-CAM always masks with every channel (32 times the figure's cost on the lab's layers).
def cam_family(model: nn.Module, input: torch.Tensor, target: int, layer: nn.Module,
               score_cam_channels: int | None = None, progress: bool = False) -> dict[str, torch.Tensor]:
    targets = [ClassifierOutputTarget(target)]
    with GradCAMPlusPlus(model, target_layers=[layer]) as cam:
        plus = cam(input_tensor=input, targets=targets)[0]
    bar = contextlib.nullcontext() if progress else quiet_progress()
    with bar, ScoreCAM(model, target_layers=[layer]) as cam:
        score = cam(input_tensor=input, targets=targets)[0]
    return {"Grad-CAM": grad_cam(model, input, target, layer),
            "Grad-CAM++": torch.from_numpy(plus), "Score-CAM": torch.from_numpy(score)}
