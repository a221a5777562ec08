"""Training: a LoRA adapter on the base sentence encoder (triplet + InfoNCE), routing heads, and a GRPO pass."""
