"""The training path: the encoder, training, embedding, evaluation, the gate and the model registry."""
