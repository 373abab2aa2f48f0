"""xcaption_ref: an independent PyTorch reference of Hugging Face's VisionEncoderDecoderModel
(ViT encoder + GPT-2 decoder with cross-attention), its ViTImageProcessor slow path and
generate() (greedy and beam search), used to make golden fixtures and to train bundled models.

Modules: safetensors_io (file format), config (HF config files), modeling (nn.Modules with HF
checkpoint names, folder load/save), preprocess (image processor), generate (greedy, beam),
tokenizer (word-level tokenizer.json helpers), wordpiece (BERT WordPiece tokenizer: load /
encode / decode), hf_unicode (Unicode classes as HF tokenizers sees them). Run with /usr/bin/python3 (torch 1.13).
"""
