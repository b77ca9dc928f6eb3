"""Builders shared by tests: a tiny, randomly initialised sentence-t5-style model."""
from pathlib import Path


def build_tiny_sentence_t5(out: Path) -> Path:
    """T5 encoder + mean pooling + dense + normalize, saved as a local sentence-transformers folder.

    Same module stack as sentence-t5-base, so the Kaggle code path is exercised for real.
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer import modules as stm
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import T5Config, T5EncoderModel, T5TokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    corpus = ["rewrite this text as a poem", "make it more formal and short", "the quick brown fox jumps",
              "convert the story into a letter", "summarize in one sentence"] * 20
    tok.train_from_iterator(corpus, trainers.UnigramTrainer(vocab_size=120, special_tokens=["<pad>", "</s>", "<unk>"],
                                                            unk_token="<unk>"))
    hf_tok = T5TokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>", extra_ids=0)
    src = out.parent / "t5-encoder-src"
    torch.manual_seed(0)
    T5EncoderModel(T5Config(vocab_size=len(hf_tok), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4)).save_pretrained(src)
    hf_tok.save_pretrained(src)
    st = SentenceTransformer(modules=[stm.Transformer(str(src)), stm.Pooling(32, "mean"),
                                      stm.Dense(32, 16, bias=False, activation_function=torch.nn.Identity()),
                                      stm.Normalize()])
    st.save(str(out))
    return out
