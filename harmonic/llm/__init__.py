"""Language-model family: GPT-2 BPE token bins, GPT / BERT / Qwen2 with harmonic heads, training, analyses."""
