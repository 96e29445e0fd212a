"""MusiCNN's output sizes, importable without Keras (the service's ONNX runtime never loads it)."""

N_TAGS = 50
EMBEDDING_DIM = 200
POOLED_DIM = 2 * 753  # max and mean over time of the 561 front-end and 3 x 64 mid-end features
