# WRONG (Task 4): passes targets=None, so the library explains the top class instead of `target`.
def cam_family(model: nn.Module, input: torch.Tensor, target: int, layer: nn.Module,
               score_cam_channels: int | None = None, progress: bool = False) -> dict[str, torch.Tensor]:
    with GradCAMPlusPlus(model, target_layers=[layer]) as cam:
        plus = cam(input_tensor=input, targets=None)[0]
    transform = keep_top_channels(score_cam_channels) if score_cam_channels else None
    with quiet_progress(), ScoreCAM(model, target_layers=[layer], reshape_transform=transform) as cam:
        score = cam(input_tensor=input, targets=None)[0]
    return {"Grad-CAM": grad_cam(model, input, target, layer),
            "Grad-CAM++": torch.from_numpy(plus), "Score-CAM": torch.from_numpy(score)}
