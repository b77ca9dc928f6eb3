"""Honest evaluation: prompt-grouped k-fold and leave-one-source-out, leaderboards, shipping the winner."""
