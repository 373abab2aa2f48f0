"""xcaption_ref: an independent PyTorch reference of Hugging Face's VisionEncoderDecoderModel
(ViT encoder + GPT-2 decoder with cross-attention), BlipForConditionalGeneration and Florence-2
(hub remote code and transformers-native), their
slow (PIL) image processors and generate() (greedy and beam search), used to make golden
fixtures and to train bundled models.

Modules: safetensors_io (file format), config (HF config files), modeling (ViT-GPT2 nn.Modules
with HF checkpoint names, folder load/save), blip (BLIP vision tower + BERT decoder, its config,
image processor settings and generate() prompt rule), preprocess (image processor), generate
(greedy, beam, decoder prompts), tokenizer (word-level tokenizer.json helpers), wordpiece (BERT
WordPiece tokenizer: load / encode / decode), bert_files (writing BERT tokenizer files for test
models), hf_unicode (Unicode classes as HF tokenizers sees them), florence2 (DaViT + projector +
BART, both checkpoint layouts, the processor, generate() with forced BOS/EOS,
post_process_generation), florence2_files (writing Florence-2 folders). Run with /usr/bin/python3
(torch 1.13).
"""
