"""Teacher zoo: a model registry (``register_model``, ``get_model``, ``list_models``) with ResNets, VGGs and LeNet-5,
torchvision weight import, trained-teacher checkpoints."""
from .checkpoints import CheckpointError, TeacherCheckpoint, load_teacher, read_sidecar, save_teacher, sidecar_path
from .lenet import lenet5
from .mobilenet import mobilenet_v2
from .registry import MODELS, ModelEntry, get_model, get_model_entry, get_model_spec, list_models, register_model
from .resnet import resnet18, resnet34, resnet50
from .teacher import (TeacherRecipe, estimate_training_seconds, evaluate_accuracy, find_teacher, list_teachers,
                      teacher_filename, train_teacher)
from .torchvision_import import (detect_layout, from_torchvision_state_dict, infer_resnet, load_state_dict,
                                 load_torchvision_state_dict, to_torchvision_state_dict, torchvision_key_map)
from .vgg import ddc_small_vgg, vgg11, vgg13, vgg16, vgg19

__all__ = ["MODELS", "CheckpointError", "ModelEntry", "TeacherCheckpoint", "TeacherRecipe", "ddc_small_vgg",
           "detect_layout", "estimate_training_seconds", "evaluate_accuracy", "find_teacher",
           "from_torchvision_state_dict", "get_model", "get_model_entry", "get_model_spec", "infer_resnet", "lenet5",
           "list_models", "list_teachers", "mobilenet_v2", "load_state_dict", "load_teacher", "load_torchvision_state_dict",
           "read_sidecar", "register_model", "resnet18", "resnet34", "resnet50", "save_teacher", "sidecar_path",
           "teacher_filename", "to_torchvision_state_dict", "torchvision_key_map", "train_teacher", "vgg11", "vgg13",
           "vgg16", "vgg19"]
