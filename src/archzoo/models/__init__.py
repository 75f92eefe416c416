"""Model assembly from configs, GLM sample construction, Hugging Face interop."""
