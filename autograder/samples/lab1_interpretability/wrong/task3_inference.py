# WRONG (Task 3): returns the raw logit as if it were a probability.
def predict(model: nn.Module, img: Image.Image,
            labels: dict[int, str] | list[str]) -> tuple[str, int, float]:
    batch = transform(img).unsqueeze(0)
    with torch.no_grad():
        logits = model(batch)[0]
    score, index = logits.max(dim=0)
    return labels[int(index)], int(index), float(score)
