"""vistune core: data, backbones, augmentation, fine-tuning and metrics.

Imports only torch / torchvision / timm / numpy / pandas / PIL: never MLflow, Prefect or DVC,
so the training core runs as is on a bare GPU machine.
"""

__version__ = "0.1.0"
