"""recover: recover Gemma's rewrite prompt from (original_text, rewritten_text), offline."""
__version__ = "0.1.0"
