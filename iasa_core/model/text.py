"""Prompt -> UMT5 embeddings, as Wan2.1 computes them (only when a text encoder is given; students store theirs)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .resolve import resolve_model_dir

MAX_TEXT_TOKENS = 512


class PromptEncoder:
    """A transformers UMT5 encoder and its tokenizer from a local folder (or a diffusers Wan repo's subfolders)."""

    def __init__(self, folder: str | os.PathLike, *, allow_download: bool = False,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> None:
        from transformers import AutoTokenizer, UMT5EncoderModel

        root = resolve_model_dir(folder, allow_download=allow_download, what="UMT5 text encoder")
        enc_dir = root / "text_encoder" if (root / "text_encoder" / "config.json").is_file() else root
        tok_dir = root / "tokenizer" if (root / "tokenizer").is_dir() else enc_dir
        if not (enc_dir / "config.json").is_file():
            raise FileNotFoundError(f"no UMT5 text encoder in {root}: expected config.json and its weights there or "
                                    "in text_encoder/ (the Wan2.1 diffusers repos have both text_encoder/ and "
                                    "tokenizer/)")
        self.tokenizer = AutoTokenizer.from_pretrained(tok_dir)
        self.model = UMT5EncoderModel.from_pretrained(enc_dir).to(device=device, dtype=dtype).eval()
        self.source = Path(root)

    @torch.no_grad()
    def __call__(self, prompt: str, max_length: int = MAX_TEXT_TOKENS) -> torch.Tensor:
        """(tokens, dim) embeddings of the prompt's real tokens; padding positions are left out (Wan zero-pads)."""
        if not isinstance(prompt, str):
            raise ValueError(f"the prompt must be text; got {type(prompt).__name__}")
        batch = self.tokenizer([prompt], padding="max_length", max_length=max_length, truncation=True,
                               add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
        device = next(self.model.parameters()).device
        ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
        hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        return hidden[0, : int(mask.sum())].float().cpu()
