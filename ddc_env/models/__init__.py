"""Teacher zoo: architectures as NetSpecs, torchvision weight import, trained-teacher checkpoints."""
from .builders import MODELS, get_model_spec, lenet5, resnet18, resnet34, resnet50, vgg11, vgg13, vgg16, vgg19

__all__ = ["MODELS", "get_model_spec", "lenet5", "resnet18", "resnet34", "resnet50", "vgg11", "vgg13", "vgg16",
           "vgg19"]
