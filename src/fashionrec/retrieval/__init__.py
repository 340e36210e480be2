"""What search needs, shared by training and serving (no torch here): the embeddings table, the FAISS index, the Feast store."""
