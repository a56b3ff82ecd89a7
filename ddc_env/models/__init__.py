"""Teacher zoo: architectures as NetSpecs, torchvision weight import, trained-teacher checkpoints."""
from .builders import MODELS, get_model_spec, lenet5, resnet18, resnet34, resnet50, vgg11, vgg13, vgg16, vgg19
from .checkpoints import CheckpointError, TeacherCheckpoint, load_teacher, read_sidecar, save_teacher, sidecar_path
from .teacher import (TeacherRecipe, estimate_training_seconds, evaluate_accuracy, find_teacher, list_teachers,
                      teacher_filename, train_teacher)
from .torchvision_import import (detect_layout, from_torchvision_state_dict, infer_resnet, load_state_dict,
                                 load_torchvision_state_dict, to_torchvision_state_dict, torchvision_key_map)

__all__ = ["MODELS", "CheckpointError", "TeacherCheckpoint", "TeacherRecipe", "detect_layout",
           "estimate_training_seconds", "evaluate_accuracy",
           "find_teacher", "from_torchvision_state_dict", "get_model_spec", "infer_resnet", "lenet5",
           "list_teachers", "load_state_dict", "load_teacher", "load_torchvision_state_dict", "read_sidecar",
           "resnet18", "resnet34", "resnet50", "save_teacher", "sidecar_path", "teacher_filename",
           "to_torchvision_state_dict", "torchvision_key_map", "train_teacher", "vgg11", "vgg13", "vgg16", "vgg19"]
