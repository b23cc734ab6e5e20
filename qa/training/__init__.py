"""Training the answer ranker: the data it learns from (`sets`)."""
