"""Training data path: originals -> prompt bank -> rewrites -> labelled pairs -> DPO pairs."""
