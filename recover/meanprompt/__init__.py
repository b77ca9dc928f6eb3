"""Mean prompt: one constant string that maximises mean SCS against a set of target prompts."""
