"""Export: merge adapters, convert HF -> GGUF with the runtime's own converter, quantize, verify."""
