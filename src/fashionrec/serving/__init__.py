"""The KServe InferenceService: the FAISS transformer and the v2 protocol around it, the two encoder runtimes, the model store and releases they load, their processes on loopback, and a client.

The transformer and everything it imports use no torch; only the encoder runtimes (encoder_service, kserve_encoder) and packaging do."""
