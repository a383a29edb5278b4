# WRONG (Task 2): hands the task to course_lib's imagenet_transform instead of building the pipeline with T.Compose.
from course_lib.preprocessing import imagenet_transform

transform = imagenet_transform()
