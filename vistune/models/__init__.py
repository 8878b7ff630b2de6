"""Networks: backbones, the saved classifier, inference, LoRA, weight trust, compression."""
