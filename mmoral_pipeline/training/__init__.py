"""SFT with TRL: the tiny-model factory, data and masking, the trainer and its Pipes entry point, inference.

Heavy libraries (torch, transformers, trl, peft) are imported inside functions only.
"""
