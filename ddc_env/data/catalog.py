"""Static facts about the known datasets: class names, normalisation constants, named class sets."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)

# The standard CIFAR-100 superclasses (coarse label order) and their five fine classes.
CIFAR100_SUPERCLASSES: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "aquatic_mammals": ("beaver", "dolphin", "otter", "seal", "whale"),
    "fish": ("aquarium_fish", "flatfish", "ray", "shark", "trout"),
    "flowers": ("orchid", "poppy", "rose", "sunflower", "tulip"),
    "food_containers": ("bottle", "bowl", "can", "cup", "plate"),
    "fruit_and_vegetables": ("apple", "mushroom", "orange", "pear", "sweet_pepper"),
    "household_electrical_devices": ("clock", "keyboard", "lamp", "telephone", "television"),
    "household_furniture": ("bed", "chair", "couch", "table", "wardrobe"),
    "insects": ("bee", "beetle", "butterfly", "caterpillar", "cockroach"),
    "large_carnivores": ("bear", "leopard", "lion", "tiger", "wolf"),
    "large_man-made_outdoor_things": ("bridge", "castle", "house", "road", "skyscraper"),
    "large_natural_outdoor_scenes": ("cloud", "forest", "mountain", "plain", "sea"),
    "large_omnivores_and_herbivores": ("camel", "cattle", "chimpanzee", "elephant", "kangaroo"),
    "medium_mammals": ("fox", "porcupine", "possum", "raccoon", "skunk"),
    "non-insect_invertebrates": ("crab", "lobster", "snail", "spider", "worm"),
    "people": ("baby", "boy", "girl", "man", "woman"),
    "reptiles": ("crocodile", "dinosaur", "lizard", "snake", "turtle"),
    "small_mammals": ("hamster", "mouse", "rabbit", "shrew", "squirrel"),
    "trees": ("maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"),
    "vehicles_1": ("bicycle", "bus", "motorcycle", "pickup_truck", "train"),
    "vehicles_2": ("lawn_mower", "rocket", "streetcar", "tank", "tractor"),
})

CIFAR100_COARSE_CLASSES: tuple[str, ...] = tuple(CIFAR100_SUPERCLASSES)
# Fine labels are the alphabetical order of the 100 fine names (as in the official meta file).
CIFAR100_FINE_CLASSES: tuple[str, ...] = tuple(sorted(n for names in CIFAR100_SUPERCLASSES.values() for n in names))

DIGIT_CLASSES: tuple[str, ...] = tuple(str(i) for i in range(10))

# Named class sets, resolved against a dataset's class names (a set applies when all its members exist).
NAMED_CLASS_SETS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "vehicles": ("airplane", "automobile", "ship", "truck"),
    "animals": ("bird", "cat", "deer", "dog", "frog", "horse"),
    **CIFAR100_SUPERCLASSES,
})


@dataclass(frozen=True)
class DatasetInfo:
    """Known facts about a named dataset: class names and per-channel normalisation constants."""

    class_names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]


_CIFAR10 = DatasetInfo(CIFAR10_CLASSES, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
_CIFAR100_MEAN, _CIFAR100_STD = (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)

KNOWN_DATASETS: Mapping[str, DatasetInfo] = MappingProxyType({
    "cifar10": _CIFAR10,
    # The JPEG copy keeps CIFAR-10's classes; the shared teacher normalises it with CIFAR-10's constants.
    "cifar10_jpeg": _CIFAR10,
    "cifar100": DatasetInfo(CIFAR100_FINE_CLASSES, _CIFAR100_MEAN, _CIFAR100_STD),
    "cifar100_coarse": DatasetInfo(CIFAR100_COARSE_CLASSES, _CIFAR100_MEAN, _CIFAR100_STD),
    "mnist": DatasetInfo(DIGIT_CLASSES, (0.1307,), (0.3081,)),
    "mnist_sample": DatasetInfo(DIGIT_CLASSES, (0.1307,), (0.3081,)),
    "svhn": DatasetInfo(DIGIT_CLASSES, (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
})

# Datasets shipped inside the package (ddc_env/assets), used when no data_dir is given.
PACKAGED_DATASETS: tuple[str, ...] = ("mnist_sample",)

# Digits: a horizontally flipped digit is another symbol, so flip augmentation is off for these.
DIGIT_DATASETS: tuple[str, ...] = ("mnist", "mnist_sample", "svhn")


def flips(dataset: str) -> bool:
    """Whether horizontal-flip augmentation suits ``dataset``."""
    return dataset not in DIGIT_DATASETS


# Datasets that torchvision can provide (download or read from its own layout under data_dir).
TORCHVISION_DATASETS: tuple[str, ...] = ("cifar10", "cifar100", "cifar100_coarse", "mnist", "svhn")
