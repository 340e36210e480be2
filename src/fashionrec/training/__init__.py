"""The training path: the encoder, training, embedding, evaluation, the gate, the model registry and packaging for TorchServe."""
