# WRONG (Task 4): make_dot without params: parameters appear by shape only, not by name.
def build_graph(model: nn.Module, input: torch.Tensor) -> graphviz.Digraph:
    return make_dot(model(input))
