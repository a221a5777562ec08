"""Export: the trained router as GGUF files llama.cpp loads (merged encoder, LoRA adapter) plus a sidecar."""
