# WRONG (Task 1): hands the task to course_lib's load_model instead of building the model with torchvision.
from course_lib.models import load_model

model = load_model("resnet34")
