"""Scoring: the competition metric and the embedders it runs on."""
