# WRONG (Task 5): clamps the map at 0, so the patches whose removal raises the probability look irrelevant.
def occlusion_sensitivity(model: nn.Module, input: torch.Tensor, target: int, patch: int = 40,
                          stride: int = 20, batch_size: int = 32, progress: bool = False) -> torch.Tensor:
    _, _, height, width = input.shape
    corners = [(i, j) for i in range(0, max(height - patch, 0) + stride, stride)
               for j in range(0, max(width - patch, 0) + stride, stride)]
    total = torch.zeros(height, width)
    count = torch.zeros(height, width)
    with torch.no_grad():
        base = F.softmax(model(input), dim=1)[0, target]
        for start in tqdm(range(0, len(corners), batch_size), disable=not progress):
            chunk = corners[start:start + batch_size]
            batch = input.repeat(len(chunk), 1, 1, 1)
            for n, (i, j) in enumerate(chunk):
                batch[n, :, i:i + patch, j:j + patch] = 0
            drops = base - F.softmax(model(batch), dim=1)[:, target]
            for drop, (i, j) in zip(drops, chunk):
                total[i:i + patch, j:j + patch] += drop
                count[i:i + patch, j:j + patch] += 1
    return (total / count.clamp(min=1)).clamp(min=0)
