"""One module per vision-language family: its processor (tokenizer side)."""
