# WRONG (Task 7): multiplies the raw head-averaged attention without adding the identity for the residual connection.
def attention_rollout(vit: nn.Module, input: torch.Tensor) -> torch.Tensor:
    maps = []

    def want_weights(module, args, kwargs):
        kwargs["need_weights"] = True
        kwargs["average_attn_weights"] = False
        return args, kwargs

    handles = []
    for block in vit.encoder.layers:
        handles.append(block.self_attention.register_forward_pre_hook(want_weights, with_kwargs=True))
        handles.append(block.self_attention.register_forward_hook(lambda m, a, out: maps.append(out[1].detach())))
    with torch.no_grad():
        vit(input)
    for handle in handles:
        handle.remove()
    tokens = maps[0].shape[-1]
    rollout = torch.eye(tokens)
    for weights in maps:
        rollout = weights[0].mean(dim=0) @ rollout
    side = math.isqrt(tokens - 1)
    return rollout[0, 1:].reshape(side, side)
