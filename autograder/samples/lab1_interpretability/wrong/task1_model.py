# WRONG (Task 1): the architecture without its pretrained weights.
model = torchvision.models.resnet34()
model.eval()
