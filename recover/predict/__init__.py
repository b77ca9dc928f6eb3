"""Inference: predictors (mean, llama.cpp, embedding) and the guarded runner that writes submissions."""
