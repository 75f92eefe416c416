"""Model assembly from configs (the decoder, config -> block builders) and Hugging Face interop."""
