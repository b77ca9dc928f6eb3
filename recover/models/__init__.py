"""Model plumbing shared by data, train, export, bench, eval and predict: LLM engines, prompts, quantizing,
HF materialisation, what ships and how this machine serves it."""
