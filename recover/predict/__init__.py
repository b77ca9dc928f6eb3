"""Prediction: the predictors (mean, LLM, embedding, ensembles) and the guarded runner that writes submissions."""
